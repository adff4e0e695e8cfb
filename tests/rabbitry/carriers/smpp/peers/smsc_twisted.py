"""A scripted SMSC on `smpp.twisted3` (Jasmin's SMPP server, on Twisted), which checks passwords.

    python smsc_twisted.py PORT

Systems it knows: "rabbitry" / "secret1" (two binds of each kind) and "full" / "secret2" (no
bind allowed: ESME_RBINDFAIL). Any other system_id gets ESME_RINVSYSID, a wrong password
ESME_RINVPASWD. Every submit_sm is accepted with message id "tw<n>", and a text receipt
(DELIVRD) for it goes out on the next receiver or transceiver bind of the system.

It prints one JSON object a line on stdout: {"event": "listening"}, then "bound" (system and
bind type), "submit" (short_message in hex), "deliver_resp" and "unbound".

The credentials checker is our own: Twisted's in-memory database compared str and bytes and
refused the right password (sms-domain.md section 2).
"""

import itertools
import json
import logging
import sys
from typing import Any

from smpp.pdu.operations import DeliverSM
from smpp.pdu.pdu_types import CommandStatus, EsmClass, EsmClassMode, EsmClassType
from smpp.twisted.config import SMPPServerConfig
from smpp.twisted.protocol import DataHandlerResponse
from smpp.twisted.server import IAuthenticatedSMPP, SMPPServerFactory
from twisted.cred import error
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer, reactor
from zope.interface import implementer

USERS = {"rabbitry": "secret1", "full": "secret2"}
SYSTEMS = {"rabbitry": {"max_bindings": 2}, "full": {"max_bindings": 0}}


def say(**record: Any) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


@implementer(ICredentialsChecker)
class Checker:
    credentialInterfaces = (IUsernamePassword,)  # noqa: N815 - Twisted's interface

    def requestAvatarId(self, credentials: Any) -> Any:  # noqa: N802 - Twisted's interface
        username = _text(credentials.username)
        if USERS.get(username) == _text(credentials.password):
            return defer.succeed(username)
        return defer.fail(error.UnauthorizedLogin())


@implementer(IRealm)
class Realm:
    def requestAvatar(self, avatar_id: Any, mind: Any, *interfaces: Any) -> Any:  # noqa: N802
        return (IAuthenticatedSMPP, avatar_id, lambda: None)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Smsc:
    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.factory: SMPPServerFactory | None = None

    def handle(self, system_id: str, smpp: Any, pdu: Any) -> Any:
        n = next(self.ids)
        params = pdu.params
        say(
            event="submit",
            n=n,
            system_id=system_id,
            bind=smpp.bind_type.name,
            source_addr=_text(params["source_addr"]),
            destination_addr=_text(params["destination_addr"]),
            short_message=bytes(params["short_message"] or b"").hex(),
        )
        message_id = f"tw{n}"
        reactor.callLater(0, self.receipt, system_id, params, message_id)
        return DataHandlerResponse(status=CommandStatus.ESME_ROK, message_id=message_id)

    def receipt(self, system_id: str, params: dict[str, Any], message_id: str) -> None:
        assert self.factory is not None
        binds = self.factory.getBoundConnections(system_id)
        bind = binds.getNextBindingForDelivery() if binds else None
        if bind is None:
            say(event="no_receiver", message_id=message_id)
            return
        text = (
            f"id:{message_id} sub:001 dlvrd:001 submit date:2601011200 done date:2601011201"
            " stat:DELIVRD err:000 text:"
        )
        deliver = DeliverSM(
            source_addr=params["destination_addr"],
            destination_addr=params["source_addr"],
            esm_class=EsmClass(EsmClassMode.DEFAULT, EsmClassType.SMSC_DELIVERY_RECEIPT),
            short_message=text.encode(),
        )
        answered = bind.sendDataRequest(deliver)
        answered.addCallbacks(
            lambda result: say(event="deliver_resp", tag=message_id, bind=bind.bind_type.name),
            lambda failure: say(event="deliver_failed", tag=message_id, error=str(failure.value)),
        )


class Factory(SMPPServerFactory):
    def addBoundConnection(self, connection: Any) -> None:  # noqa: N802 - Twisted's name
        super().addBoundConnection(connection)
        say(event="bound", system_id=connection.system_id, bind=connection.bind_type.name)

    def removeConnection(self, connection: Any) -> None:  # noqa: N802 - Twisted's name
        if connection.system_id is not None:
            say(event="unbound", system_id=connection.system_id)
        super().removeConnection(connection)


def main(port: int) -> None:
    logging.basicConfig(level=logging.CRITICAL)
    smsc = Smsc()
    config = SMPPServerConfig(msgHandler=smsc.handle, systems=SYSTEMS)
    portal = Portal(Realm(), [Checker()])
    smsc.factory = Factory(config, auth_portal=portal)
    reactor.listenTCP(port, smsc.factory, interface="127.0.0.1")
    reactor.callWhenRunning(say, event="listening", port=port)
    reactor.run()


if __name__ == "__main__":
    main(int(sys.argv[1]))
