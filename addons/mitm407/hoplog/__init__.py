"""hoplog."""
