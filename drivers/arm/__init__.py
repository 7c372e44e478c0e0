"""The arm side of kinebridge: the :class:`~kinebridge.drivers.arm.driver.ArmDriver` interface and its
errors (``driver``), joint limits and streaming rates (``limits``), the arm's facts (``model``), its
configuration (``config``) and the factory that builds a driver from it (``factory.make_arm``).

(Nothing is imported here: reading a config must not load the Numba kernels the driver uses.)
"""
