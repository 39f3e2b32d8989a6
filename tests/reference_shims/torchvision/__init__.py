"""Test-only stand-in for the torchvision names the SAM references import."""
