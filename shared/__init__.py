"""The small common kernel every Aftersales service builds on.

Envelope and event models, Kafka plumbing (consumer with inbox + dead letters + commit
policy, transactional outbox and its relay), durable timers, database helpers and the
migrations runner, settings, logging, metrics and the clock. It knows nothing of any one
service's business rules.
"""
