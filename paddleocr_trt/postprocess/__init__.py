"""Host post-processing that works from what a fused engine returns (issue 11)."""
