"""The queue manager: active queue limits, retry and lifetime timers, and the
default per-destination and per-transport concurrency and recipient limits.

Per-transport settings such as ``smtp_destination_concurrency_limit`` exist
for every master.cf transport and are not declared here one by one; only the
``default_*`` values and the two ``local_*`` limits Postfix builds in are.
"""

from __future__ import annotations

from mailhorn.config.params import Kind, Param

PARAMS: tuple[Param, ...] = (
    Param(
        "qmgr_message_active_limit",
        Kind.INT,
        "20000",
        "The most messages the active queue holds at once.",
    ),
    Param(
        "qmgr_message_recipient_limit",
        Kind.INT,
        "20000",
        "The most recipients held in memory by the queue manager.",
    ),
    Param(
        "qmgr_message_recipient_minimum",
        Kind.INT,
        "10",
        "The fewest in-memory recipients guaranteed to any message.",
    ),
    Param(
        "qmgr_fudge_factor",
        Kind.INT,
        "100",
        "The share (percent) of delivery slots a bounce message may take from ordinary mail.",
    ),
    Param(
        "qmgr_clog_warn_time",
        Kind.TIME,
        "300s",
        "How often to warn that the active queue is congested (0 = never).",
        unit="s",
    ),
    Param(
        "qmgr_daemon_timeout",
        Kind.TIME,
        "1000s",
        "How long the queue manager may take to handle one request.",
        unit="s",
    ),
    Param(
        "qmgr_ipc_timeout",
        Kind.TIME,
        "60s",
        "The queue manager's time limit for talking to a delivery agent.",
        unit="s",
    ),
    Param("queue_run_delay", Kind.TIME, "300s", "How often the deferred queue is scanned.", unit="s"),
    Param(
        "minimal_backoff_time",
        Kind.TIME,
        "300s",
        "The shortest time a deferred message or destination waits before a retry.",
        unit="s",
    ),
    Param(
        "maximal_backoff_time",
        Kind.TIME,
        "4000s",
        "The longest time a deferred message waits before a retry.",
        unit="s",
    ),
    Param(
        "maximal_queue_lifetime",
        Kind.TIME,
        "5d",
        "How long a message may stay in the queue before it is returned.",
        unit="d",
    ),
    Param(
        "bounce_queue_lifetime",
        Kind.TIME,
        "5d",
        "How long a non-delivery notice may stay in the queue before it is discarded.",
        unit="d",
    ),
    Param(
        "delay_warning_time",
        Kind.TIME,
        "0h",
        "How long a message waits before its sender is told of the delay (0 = never).",
        unit="h",
    ),
    Param("defer_transports", Kind.LIST, "", "Transports whose mail is kept in the queue until a flush."),
    Param(
        "transport_retry_time",
        Kind.TIME,
        "60s",
        "How long the queue manager waits before retrying a failed transport.",
        unit="s",
    ),
    Param("hash_queue_depth", Kind.INT, "1", "How many subdirectory levels the hashed queues use."),
    Param(
        "hash_queue_names",
        Kind.LIST,
        "deferred, defer",
        "Queues whose files are spread over hashed subdirectories.",
    ),
    Param(
        "queue_minfree",
        Kind.INT,
        "0",
        "The free space (bytes) the queue file system needs before mail is accepted.",
    ),
    Param(
        "enable_long_queue_ids",
        Kind.BOOL,
        "no",
        "Whether queue IDs are long, time-ordered and never reused.",
    ),
    Param(
        "queue_file_attribute_count_limit",
        Kind.INT,
        "100",
        "The most named attributes a queue file may carry.",
    ),
    Param(
        "default_destination_concurrency_limit",
        Kind.INT,
        "20",
        "The default most parallel deliveries to one destination.",
    ),
    Param(
        "default_destination_recipient_limit",
        Kind.INT,
        "50",
        "The default most recipients in one delivery.",
    ),
    Param(
        "default_destination_concurrency_failed_cohort_limit",
        Kind.INT,
        "1",
        "How many failed connection cohorts mark a destination dead.",
    ),
    Param(
        "default_destination_concurrency_negative_feedback",
        Kind.INT,
        "1",
        "How much concurrency drops after a failed delivery.",
    ),
    Param(
        "default_destination_concurrency_positive_feedback",
        Kind.INT,
        "1",
        "How much concurrency grows after a successful delivery.",
    ),
    Param(
        "default_destination_rate_delay",
        Kind.TIME,
        "0s",
        "The default pause between deliveries to one destination.",
        unit="s",
    ),
    Param(
        "default_transport_rate_delay",
        Kind.TIME,
        "0s",
        "The default pause between deliveries by one transport.",
        unit="s",
    ),
    Param(
        "default_delivery_slot_cost",
        Kind.INT,
        "5",
        "How many slots a message must wait to preempt another.",
    ),
    Param(
        "default_delivery_slot_discount",
        Kind.INT,
        "50",
        "The share (percent) of slots granted before the cost is paid.",
    ),
    Param("default_delivery_slot_loan", Kind.INT, "3", "How many slots a message may borrow in advance."),
    Param(
        "default_minimum_delivery_slots",
        Kind.INT,
        "3",
        "How many recipients a message needs before it may be preempted.",
    ),
    Param(
        "default_extra_recipient_limit",
        Kind.INT,
        "1000",
        "The default extra in-memory recipients per transport.",
    ),
    Param(
        "default_recipient_limit",
        Kind.INT,
        "20000",
        "The default most in-memory recipients per transport.",
    ),
    Param(
        "default_recipient_refill_delay",
        Kind.TIME,
        "5s",
        "How long to wait before topping up in-memory recipients.",
        unit="s",
    ),
    Param(
        "default_recipient_refill_limit",
        Kind.INT,
        "100",
        "How many recipients are read at once when topping up.",
    ),
    Param(
        "initial_destination_concurrency",
        Kind.INT,
        "5",
        "How many parallel deliveries a destination starts with.",
    ),
    Param(
        "destination_concurrency_feedback_debug",
        Kind.BOOL,
        "no",
        "Whether concurrency changes are logged.",
    ),
    Param(
        "local_destination_concurrency_limit",
        Kind.INT,
        "2",
        "The most parallel local deliveries to one user.",
    ),
    Param("local_destination_recipient_limit", Kind.INT, "1", "The most recipients in one local delivery."),
    Param(
        "confirm_delay_cleared",
        Kind.BOOL,
        "no",
        "Whether the sender is told when a delayed message has left the queue.",
    ),
    Param(
        "default_delivery_status_filter",
        Kind.STRING,
        "",
        "Tables that rewrite delivery status codes and texts.",
    ),
    Param(
        "pipe_delivery_status_filter",
        Kind.STRING,
        "$default_delivery_status_filter",
        "Tables that rewrite pipe(8) delivery status codes and texts.",
    ),
    Param("dont_remove", Kind.INT, "0", "Whether queue files are kept after delivery (for debugging)."),
    Param(
        "default_filter_nexthop",
        Kind.STRING,
        "",
        "The next hop of content_filter when the filter names none.",
    ),
    Param(
        "delay_logging_resolution_limit",
        Kind.INT,
        "2",
        "How many decimals delay times have in log records.",
    ),
)
