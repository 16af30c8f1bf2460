"""operator/visionops_operator package."""
