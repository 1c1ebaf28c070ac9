"""Sources → batches: feature arrays, image folders and arrays, tensors, samplers."""
