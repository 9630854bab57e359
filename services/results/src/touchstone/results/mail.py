"""Email over SMTP (the standard library's ``smtplib``, run in a thread).

``SmtpMailer._deliver`` is the one place where SMTP's answers become ours:

| answer                                                   | error              |
|----------------------------------------------------------|--------------------|
| accepted for every recipient                             | none               |
| refused login, refused sender or every recipient, 5xx    | ``PermanentError`` |
| timeouts, connection errors, 4xx (greylisting, busy)     | ``UnavailableError`` |
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Literal

from touchstone.results.domain import Message
from touchstone.shared.errors import PermanentError, UnavailableError

MAX_SUBJECT = 200


class SmtpMailer:
    """Sends each message as a plain-text email to fixed recipients."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        recipients: Sequence[str],
        security: Literal["starttls", "tls", "none"] = "starttls",
        user: str = "",
        password_file: Path | None = None,
        timeout_s: float = 15.0,
        subject_prefix: str = "[Touchstone]",
    ) -> None:
        if not recipients:
            raise ValueError("an SMTP mailer needs at least one recipient")
        self.host, self.port, self.security = host, port, security
        self.sender, self.recipients = sender, tuple(recipients)
        self.user, self.password_file = user, password_file
        self.timeout_s = timeout_s
        self.subject_prefix = subject_prefix

    def compose(self, message: Message) -> EmailMessage:
        mail = EmailMessage()
        subject = " ".join(f"{self.subject_prefix} {message.title}".split())  # no header injection
        mail["Subject"] = subject[:MAX_SUBJECT]
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.recipients)
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = make_msgid(domain="touchstone")
        body = "\n".join(message.lines)
        if message.link:
            body += f"\n\n{message.link}"
        mail.set_content(body + "\n")
        return mail

    async def send(self, message: Message) -> None:
        await asyncio.to_thread(self._deliver, self.compose(message))

    def _deliver(self, mail: EmailMessage) -> None:
        context = ssl.create_default_context()
        try:
            client: smtplib.SMTP = (
                smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=context)
                if self.security == "tls" else smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
            )
            with client:
                if self.security == "starttls":
                    client.starttls(context=context)
                if self.user:
                    client.login(self.user, self._password())
                refused = client.send_message(mail, from_addr=self.sender, to_addrs=list(self.recipients))
        except smtplib.SMTPAuthenticationError as e:
            raise PermanentError(f"SMTP login refused: {e.smtp_code}") from e
        except smtplib.SMTPRecipientsRefused as e:
            raise PermanentError(f"SMTP refused every recipient: {sorted(e.recipients)}") from e
        except smtplib.SMTPResponseException as e:
            if 400 <= e.smtp_code < 500:
                raise UnavailableError(f"SMTP server busy: {e.smtp_code} {e.smtp_error!r}") from e
            raise PermanentError(f"SMTP refused the message: {e.smtp_code} {e.smtp_error!r}") from e
        except (OSError, smtplib.SMTPException) as e:
            raise UnavailableError(f"SMTP server unreachable: {e!r}") from e
        if refused:
            raise PermanentError(f"SMTP refused some recipients: {sorted(refused)}")

    def _password(self) -> str:
        if self.password_file is None:
            return ""
        return self.password_file.read_text().strip()
