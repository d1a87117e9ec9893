"""smtpd: the SMTP server (Postfix's smtpd(8)) and its access restrictions."""
