"""Parameter declarations, one module per subsystem; ``ALL`` is their union.

Each module declares the main.cf parameters one part of mailhorn reads, with
Postfix 3.7's defaults; :mod:`mailhorn.config.params` gathers them into
``PARAMS`` and rejects a name declared twice.
"""

from __future__ import annotations

from mailhorn.config.paramdefs import (
    access,
    bounce,
    cleanup,
    core,
    invented,
    local,
    mailaccess,
    master,
    milter,
    paths,
    queue,
    resolve,
    restrictions,
    sasl,
    smtp,
    smtpd,
    submit,
    tables,
    tls,
    tls_client,
    vda,
    verify,
    virtual,
)

ALL = (
    *core.PARAMS,
    *paths.PARAMS,
    *master.PARAMS,
    *submit.PARAMS,
    *tables.PARAMS,
    *queue.PARAMS,
    *resolve.PARAMS,
    *cleanup.PARAMS,
    *virtual.PARAMS,
    *local.PARAMS,
    *bounce.PARAMS,
    *verify.PARAMS,
    *smtpd.PARAMS,
    *restrictions.PARAMS,
    *milter.PARAMS,
    *sasl.PARAMS,
    *tls.PARAMS,
    *tls_client.PARAMS,
    *smtp.PARAMS,
    *invented.PARAMS,
    *access.PARAMS,
    *mailaccess.PARAMS,
    *vda.PARAMS,
)
