"""venues: venue registry and smart order routing (expected all-in cost per venue)."""
