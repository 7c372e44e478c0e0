"""VLA action tokens into the control loop: the token decoder (codes → a timestamped joint chunk), the
decoder node (kind ``decoder``: ``policy/tokens`` in, ``chunk`` out) and the policy node (kind ``policy``;
implementation ``replay-tokens`` streams a data set's tokens as a stand-in producer). Imports no torch."""
