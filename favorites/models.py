"""A user's saved images. The model and its API arrive with the accounts issue."""
