"""The validation cache: stores (memory, Redis), the tiers in front of the directory."""
