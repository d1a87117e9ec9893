"""Delivery status notifications: who gets postmaster copies of which problems
(postconf(5) ``notify_classes``), how much of the message a bounce returns,
and the sender of bounces that must not bounce again.
"""

from __future__ import annotations

from mailhorn.config.params import Kind, Param

PARAMS: tuple[Param, ...] = (
    Param(
        "notify_classes",
        Kind.LIST,
        "resource, software",
        "Which problems are reported to the postmaster.",
    ),
    Param("bounce_notice_recipient", Kind.STRING, "postmaster", "Who gets postmaster copies of bounces."),
    Param("2bounce_notice_recipient", Kind.STRING, "postmaster", "Who gets undeliverable bounces."),
    Param(
        "delay_notice_recipient",
        Kind.STRING,
        "postmaster",
        "Who gets postmaster copies of delay warnings.",
    ),
    Param(
        "error_notice_recipient",
        Kind.STRING,
        "postmaster",
        "Who gets notices of software and resource problems.",
    ),
    Param(
        "bounce_size_limit",
        Kind.INT,
        "50000",
        "How much of the original message a bounce includes, in bytes.",
    ),
    Param("bounce_template_file", Kind.STRING, "", "A file that overrides the texts of notifications."),
    Param(
        "double_bounce_sender",
        Kind.STRING,
        "double-bounce",
        "The sender of bounces that must not bounce back.",
    ),
    Param(
        "enable_threaded_bounces",
        Kind.BOOL,
        "no",
        "Whether bounces are threaded with the original message.",
    ),
    Param(
        "backwards_bounce_logfile_compatibility",
        Kind.BOOL,
        "yes",
        "Whether bounce logs keep the pre-2.1 format.",
    ),
)
