"""Face detection, the official LivePortrait crop, and paste-back."""
