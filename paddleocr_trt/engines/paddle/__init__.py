"""Native Paddle: what runs when no other engine can (PaddleX's own predictor)."""
