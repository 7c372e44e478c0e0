"""The robot PC itself: what the OS grants a real-time process (``realtime``), free ports (``net``)."""
