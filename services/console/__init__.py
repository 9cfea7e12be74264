"""The console: pages for the people (sign-in, the agents' desk, the customer's whole story)."""
