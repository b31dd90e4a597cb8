"""The storefront-facing service (issue 6): engines decode, the API serves, publishers stream."""
