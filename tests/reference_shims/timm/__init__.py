"""Test-only stand-in for the timm names MobileSAM's TinyViT imports."""
