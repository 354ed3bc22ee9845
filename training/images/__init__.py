"""Image quality control on the workstation: data, models, training, Grad-CAM, evaluation."""
