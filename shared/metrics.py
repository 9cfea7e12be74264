"""Every metric name of the platform, in one place, so operators can read the whole list.

Technical metrics carry a `service` label. Business KPIs are gauges that each service
recomputes from its own database on a timer, so they agree across replicas.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# --- consumption -------------------------------------------------------------------------
EVENTS_CONSUMED = Counter(
    "aftersales_events_consumed_total",
    "Records read by a service, by outcome: processed, duplicate (inbox hit), ignored (not its concern), dead_lettered",
    ["service", "topic", "event_type", "outcome"],
)
DEAD_LETTERS = Counter(
    "aftersales_dead_letters_total", "Records sent to aftersales.deadletter, by error class",
    ["service", "topic", "error"],
)
HANDLER_SECONDS = Histogram(
    "aftersales_handler_seconds", "Time to handle one partition batch in one database transaction",
    ["service"], buckets=_LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "aftersales_batch_records", "Records per partition batch", ["service"],
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000),
)
CONSUMER_LAG = Gauge(
    "aftersales_consumer_lag", "Records behind the end of the partition (high watermark - position)",
    ["service", "topic", "partition"],
)
TRANSIENT_ERRORS = Counter(
    "aftersales_transient_errors_total", "Database or broker failures that were retried with backoff",
    ["service", "component"],
)

# --- publication -------------------------------------------------------------------------
EVENTS_PUBLISHED = Counter(
    "aftersales_events_published_total", "Events the outbox relay published to Kafka",
    ["service", "topic", "event_type"],
)
OUTBOX_SET_ASIDE = Counter(
    "aftersales_outbox_set_aside_total",
    "Outbox rows the broker refuses for good (over the topic's record size), set aside so the rest flow on",
    ["service", "topic"],
)
OUTBOX_BACKLOG = Gauge("aftersales_outbox_backlog", "Outbox rows committed but not yet published", ["service"])
OUTBOX_DELAY = Histogram(
    "aftersales_outbox_delay_seconds", "From the handler's commit to the broker's acknowledgement",
    ["service"], buckets=_LATENCY_BUCKETS,
)

# --- timers ------------------------------------------------------------------------------
TIMER_BACKLOG = Gauge("aftersales_timer_backlog", "Timers due now (by the service clock) and not yet fired", ["service"])
TIMERS_FIRED = Counter("aftersales_timers_fired_total", "Durable timers fired", ["service", "kind"])

# --- HTTP --------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "aftersales_http_requests_total", "HTTP requests by route and status", ["service", "method", "route", "status"]
)
HTTP_REQUEST_SECONDS = Histogram(
    "aftersales_http_request_seconds",
    "Time from the request's arrival to its response, by route template (e.g. /v1/cases/{case_id}, never the raw "
    "path, so ids do not multiply the series); 'unmatched' for paths no route serves",
    ["service", "method", "route"], buckets=_LATENCY_BUCKETS,
)

# --- business KPIs (DESIGN.md §4) --------------------------------------------------------
CUSTOMER_FILES_INCOMPLETE = Gauge(
    "aftersales_customer_files_incomplete", "Customer files missing phone, address, plate or model"
)
CUSTOMER_FILES = Gauge("aftersales_customer_files", "Customer files kept by intake")
CONTACT_VALUES_FLAGGED = Counter(
    "aftersales_contact_values_flagged_total",
    "Records filed with a contact value that failed its check (kept and flagged on the file, not dead-lettered)",
    ["field", "event_type"],
)
CUSTOMER_FILES_FLAGGED = Gauge(
    "aftersales_customer_files_flagged", "Customer files with a flagged (unusable) contact value, by field", ["field"]
)
WARRANTY_RETURN_VISIT_RATE = Gauge(
    "aftersales_warranty_return_visit_rate",
    "Deliveries and pickups under warranty whose first return visit completed / all of them (target 1.0)",
)
SATISFACTION_RATE = Gauge(
    "aftersales_satisfaction_rate", "Completed calls scoring >= 4 of 5 / completed calls with a score (target 0.98)"
)
HISTORICAL_PICKUPS = Counter(
    "aftersales_followup_historical_pickups_total",
    "Pickups filed as history, without a return-visit call (their call window closed long before they arrived)",
)
LOST_CUSTOMER_REASONS = Counter(
    "aftersales_followup_lost_customer_reasons_total",
    "Lost-customer calls that reached the customer, by the reason they gave for no longer coming", ["reason"],
)
FOLLOWUPS_OPEN = Gauge("aftersales_followups_open", "Open return-visit follow-ups", ["kind"])
FOLLOWUPS_OVERDUE = Gauge("aftersales_followups_overdue", "Open follow-ups past due_by", ["kind"])
FEEDBACK_ITEMS_OPEN = Gauge("aftersales_feedback_items_open",
                            "Feedback items (customer concerns) not yet answered, by state (open, escalated)", ["state"])
FEEDBACK_ITEMS_IN_TIME_RATE = Gauge(
    "aftersales_feedback_items_answered_in_time_rate",
    "Feedback items answered on the call or before the supervisor deadline / items answered (KPI window)")
COMPLAINTS_OPEN = Gauge("aftersales_complaints_open", "Open complaint cases by escalation level", ["level"])
COMPLAINT_SLA_BREACHES = Gauge("aftersales_complaint_sla_breaches", "Complaint SLA breaches (all time)", ["breach"])
COMPLAINT_SLA_COMPLIANCE = Gauge(
    "aftersales_complaint_sla_compliance", "Resolved cases resolved within their SLA / resolved cases"
)
PARTS_SHIPMENT_ACCURACY = Gauge(
    "aftersales_parts_shipment_accuracy", "Lines shipped without a discrepancy / lines shipped (target 0.98)"
)
QUALITY_ALERTS_OPEN = Gauge("aftersales_quality_alerts_open", "Early-warning alerts raised or acknowledged, not closed")
NOTIFICATIONS = Counter(
    "aftersales_notifications_total", "Notifications by channel and outcome", ["channel", "outcome"]
)

# --- complaints --------------------------------------------------------------------------
COMPLAINT_MEAN_SECONDS_TO_ACKNOWLEDGE = Gauge(
    "aftersales_complaint_mean_seconds_to_acknowledge", "Mean active time from filing (or reopening) to acknowledgement"
)
COMPLAINT_MEAN_SECONDS_TO_RESOLVE = Gauge(
    "aftersales_complaint_mean_seconds_to_resolve",
    "Mean active time (pending_customer excluded) from filing (or reopening) to resolution",
)
COMPLAINT_MEAN_WORKING_SECONDS_TO_ACKNOWLEDGE = Gauge(
    "aftersales_complaint_mean_working_seconds_to_acknowledge",
    "Mean working time on the case's calendar (business hours of working days) from filing to acknowledgement",
)
COMPLAINT_MEAN_WORKING_SECONDS_TO_RESOLVE = Gauge(
    "aftersales_complaint_mean_working_seconds_to_resolve",
    "Mean working time on the case's calendar (pending_customer excluded) from filing to resolution",
)
COMPLAINT_REOPEN_RATE = Gauge(
    "aftersales_complaint_reopen_rate", "Cases reopened at least once / cases resolved at least once"
)
COMPLAINT_ESCALATIONS = Gauge("aftersales_complaint_escalations", "Escalations announced (all time)")

# --- quality -----------------------------------------------------------------------------
QUALITY_DEFECT_REPORTS = Gauge(
    "aftersales_quality_defect_reports",
    "Defect reports counted (once per defect) in the last KPI window (default 30 days), by part category",
    ["category"],
)
QUALITY_REPORTS_UNRESOLVED = Gauge(
    "aftersales_quality_reports_unresolved",
    "Counted defect reports whose batch or supplier is not known (awaiting the vehicle's sale, or ambiguous)",
)
QUALITY_ALERTS_BY_STATE = Gauge(
    "aftersales_quality_alerts_by_state", "Early-warning alerts not closed, by state", ["state"]
)
