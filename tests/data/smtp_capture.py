"""An SMTP server on loopback that keeps every message it is given (tests/common/smtp.rs).

Usage: smtp_capture.py HOST PORT OUTDIR [--tls CERT KEY] [--auth USER PASSWORD]

Each message is written as OUTDIR/N.eml (the DATA as received) and OUTDIR/N.json
(envelope sender, recipients, whether the session was TLS and authenticated, the
EHLO name). With --tls the server offers STARTTLS; with --auth it offers AUTH
PLAIN (also before STARTTLS) and accepts only USER/PASSWORD.
"""

import json
import os
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def main():
    host, port, outdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    args = sys.argv[4:]
    kwargs = {}
    if "--tls" in args:
        import ssl

        i = args.index("--tls")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args[i + 1], args[i + 2])
        kwargs["tls_context"] = ctx
    if "--auth" in args:
        i = args.index("--auth")
        user, password = args[i + 1].encode(), args[i + 2].encode()

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and (
                auth_data.login == user and auth_data.password == password
            )
            return AuthResult(success=ok)

        kwargs["authenticator"] = authenticator
        kwargs["auth_require_tls"] = False
        # Only PLAIN: aiosmtpd's LOGIN prompt is "User Name", which Alertmanager's
        # LOGIN (it expects "Username:") answers by aborting.
        kwargs["auth_exclude_mechanism"] = ["LOGIN"]
    count = [0]

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            count[0] += 1
            base = os.path.join(outdir, str(count[0]))
            with open(base + ".eml.tmp", "wb") as f:
                f.write(envelope.original_content)
            meta = {
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "tls": session.ssl is not None,
                "authenticated": bool(session.authenticated),
                "hello": session.host_name,
            }
            with open(base + ".json", "w") as f:
                json.dump(meta, f)
            os.rename(base + ".eml.tmp", base + ".eml")
            return "250 OK"

    controller = Controller(Handler(), hostname=host, port=port, **kwargs)
    controller.start()
    while True:
        time.sleep(3600)


main()
