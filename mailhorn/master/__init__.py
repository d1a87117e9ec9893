"""The master: binds master.cf's listeners and supervises the worker processes.

* :mod:`mailhorn.master.supervisor` -- the master process: pid file, control
  socket, signals, starting and restarting workers, reload;
* :mod:`mailhorn.master.worker` -- one worker process: privileges, the event
  loop, the services;
* :mod:`mailhorn.master.listeners` -- endpoints and listening sockets;
* :mod:`mailhorn.master.control` -- the pid file and the control socket;
* :mod:`mailhorn.master.privileges` -- ``mail_owner`` and the privilege drop;
* :mod:`mailhorn.master.check` -- ``mailhorn check``.
"""
