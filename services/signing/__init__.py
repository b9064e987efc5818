"""signing: signs record versions role by role; one-click batches fanned out to competing workers."""
