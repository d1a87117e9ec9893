"""Setting up an instance: the files ``mailhorn quickstart`` and the demo write.

* :mod:`mailhorn.setup.templates` — main.cf, master.cf and the ``*.cf`` map
  files that point Postfix's parameters at the mail directory;
* :mod:`mailhorn.setup.instance` — writes an instance: directories,
  configuration, certificate, directory database, first domain and user;
* :mod:`mailhorn.setup.tls` — a self-signed certificate;
* :mod:`mailhorn.setup.dkim` — a DKIM key pair and its DNS record;
* :mod:`mailhorn.setup.dnsrecords` — the DNS records a domain publishes;
* :mod:`mailhorn.setup.systemd` — the service unit;
* :mod:`mailhorn.setup.sdnotify` — telling systemd the master is ready.
"""
