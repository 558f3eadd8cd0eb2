"""The network and what its outputs mean: the timm backbone with one head per region, head kinds
(softmax, CORN, sigmoid), losses, running a loader through the model, and calibration with the
decision rules that turn probabilities into a grade."""
