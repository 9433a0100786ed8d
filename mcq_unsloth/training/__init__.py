"""Training: recipes, run folders, SFT and GRPO with TRL, rewards and callbacks, the demo."""
