"""Kafka plumbing: clients and topic admin, the consumer pipeline, the outbox relay."""
