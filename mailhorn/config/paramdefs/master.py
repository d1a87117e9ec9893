"""The master: listening addresses, process limits, timeouts between services,
and the names of the internal services as master.cf defines them.

``inet_interfaces``, ``inet_protocols`` and ``proxy_interfaces`` decide where
the network services listen and which addresses count as this host's own
(postconf(5) ``proxy_interfaces``). The ``*_service_name`` parameters name the
master.cf entries of the internal services.
"""

from __future__ import annotations

from mailhorn.config.params import Kind, Param

PARAMS: tuple[Param, ...] = (
    Param(
        "inet_interfaces",
        Kind.LIST,
        "all",
        "The addresses the SMTP server and other network services listen on.",
    ),
    Param("inet_protocols", Kind.LIST, "all", "The IP versions used: ipv4, ipv6 or all."),
    Param(
        "proxy_interfaces",
        Kind.LIST,
        "",
        "Addresses that forward connections to this host (NAT, load balancer).",
    ),
    Param(
        "default_process_limit",
        Kind.INT,
        "100",
        "The default maximum number of processes per master.cf service.",
    ),
    Param(
        "daemon_timeout",
        Kind.TIME,
        "18000s",
        "How long a service may take to handle one request before it is killed.",
        unit="s",
    ),
    Param(
        "ipc_timeout",
        Kind.TIME,
        "3600s",
        "The time limit for reading or writing on an internal channel.",
        unit="s",
    ),
    Param(
        "ipc_idle",
        Kind.TIME,
        "5s",
        "How long an internal client keeps an idle connection to a service.",
        unit="s",
    ),
    Param(
        "ipc_ttl",
        Kind.TIME,
        "1000s",
        "How long an internal client keeps a connection to a service at most.",
        unit="s",
    ),
    Param(
        "max_idle",
        Kind.TIME,
        "100s",
        "How long an idle service process waits for a request before it exits.",
        unit="s",
    ),
    Param("max_use", Kind.INT, "100", "How many requests a service process handles before it exits."),
    Param(
        "service_throttle_time",
        Kind.TIME,
        "60s",
        "How long the master waits before restarting a failing service.",
        unit="s",
    ),
    Param("master_service_disable", Kind.LIST, "", "master.cf services that are not started."),
    Param(
        "known_tcp_ports",
        Kind.LIST,
        "lmtp=24, smtp=25, smtps=submissions=465, submission=587",
        "Port numbers of well-known service names, used when the system lacks them.",
    ),
    Param(
        "trigger_timeout",
        Kind.TIME,
        "10s",
        "The time limit for sending a wake-up request to a service.",
        unit="s",
    ),
    Param(
        "application_event_drain_time",
        Kind.TIME,
        "100s",
        "How long to wait for pending work before a service stops.",
        unit="s",
    ),
    Param("fork_attempts", Kind.INT, "5", "How often to retry a failed process creation."),
    Param("fork_delay", Kind.TIME, "1s", "How long to wait between process creation attempts.", unit="s"),
    Param(
        "in_flow_delay",
        Kind.TIME,
        "1s",
        "How long to pause a mail source when the queue manager falls behind.",
        unit="s",
    ),
    Param(
        "tcp_windowsize",
        Kind.INT,
        "0",
        "The TCP window size to request for network connections (0 = system default).",
    ),
    Param(
        "daemon_table_open_error_is_fatal",
        Kind.BOOL,
        "no",
        "Whether a table that cannot be opened stops a service instead of a warning.",
    ),
    Param("service_name", Kind.STRING, "", "The master.cf name of the running service."),
    Param(
        "bounce_service_name",
        Kind.STRING,
        "bounce",
        "The name of the service that sends non-delivery notices.",
    ),
    Param(
        "cleanup_service_name",
        Kind.STRING,
        "cleanup",
        "The name of the service that prepares incoming mail for the queue.",
    ),
    Param(
        "defer_service_name",
        Kind.STRING,
        "defer",
        "The name of the service that records deferred deliveries.",
    ),
    Param(
        "error_service_name",
        Kind.STRING,
        "error",
        "The name of the transport that refuses mail with an error.",
    ),
    Param(
        "flush_service_name",
        Kind.STRING,
        "flush",
        "The name of the service that manages the fast flush logs.",
    ),
    Param(
        "pickup_service_name",
        Kind.STRING,
        "pickup",
        "The name of the service that collects locally submitted mail.",
    ),
    Param("queue_service_name", Kind.STRING, "qmgr", "The name of the queue manager service."),
    Param(
        "rewrite_service_name",
        Kind.STRING,
        "rewrite",
        "The name of the address rewriting and resolving service.",
    ),
    Param("showq_service_name", Kind.STRING, "showq", "The name of the service that lists the queue."),
    Param(
        "trace_service_name",
        Kind.STRING,
        "trace",
        "The name of the service that records delivery traces.",
    ),
    Param("proxymap_service_name", Kind.STRING, "proxymap", "The name of the read-only table proxy service."),
    Param(
        "proxywrite_service_name",
        Kind.STRING,
        "proxywrite",
        "The name of the read-write table proxy service.",
    ),
    Param(
        "address_verify_service_name",
        Kind.STRING,
        "verify",
        "The name of the address verification service.",
    ),
    Param(
        "connection_cache_service_name",
        Kind.STRING,
        "scache",
        "The name of the SMTP connection cache service.",
    ),
    Param(
        "tlsmgr_service_name",
        Kind.STRING,
        "tlsmgr",
        "The name of the TLS session cache and randomness service.",
    ),
)
