"""The backend flow against the real simulation stack, with a test wallet (solders ``Keypair``)
standing in for the user's browser: vault → provenance verified (sim root, measurements.json) →
agent → its provenance verified → grant message → signed by the wallet → grant → a SOL transfer
built with solders, signed through the API and verified with solders → the same request again
gives the same signature → revoked (admin, and by the wallet's own signature) → refused with the
typed exception; the kill switch; a scheduled transfer; an export opened with HPKE; bad input."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction

from signing_enclave import (
    AuthorizationSignatureInvalidError,
    BadRequestError,
    CertificateChainError,
    GrantRevokedError,
    Intent,
    KillSwitchError,
    PolicyDeniedError,
    ProvenanceInvalidError,
    ProvenanceTrust,
    ReplayedRequestError,
    SignerApiError,
    SignerClient,
    UnauthorizedError,
    UntrustedImageError,
    UserDataMismatchError,
    aws_trust,
    b64decode,
    enclave_id_from_recipient_key,
    grant_id,
    parse_record_header,
    policy_sha256,
    random_uuid,
    seal_scheduled_record,
    verify_attestation_document,
    verify_provenance,
)

from _support import Sim

pytestmark = pytest.mark.sim

POLICY: dict[str, Any] = {
    "max_lamports_per_tx": 1_000_000_000,
    "max_lamports_per_day": 5_000_000_000,
    "max_fee_lamports": 100_000,
    "tokens": [],
    "allowed_programs": [],
    "max_notional_cents_per_tx": 0,
    "max_notional_cents_per_day": 0,
}


def unsigned_transfer(source: Pubkey, destination: Pubkey, lamports: int) -> bytes:
    """An unsigned SOL transfer built with solders (the agent pays the fee), signature slot zero."""
    ix = transfer(TransferParams(from_pubkey=source, to_pubkey=destination, lamports=lamports))
    message = Message.new_with_blockhash([ix], source, Hash(secrets.token_bytes(32)))
    return bytes(Transaction.new_unsigned(message))


def check_signed(signed_b64: str, signer: str, signature: str, unsigned: bytes) -> None:
    """Verifies a signed transaction with solders: the agent's signature over the exact message."""
    tx = Transaction.from_bytes(b64decode(signed_b64))
    tx.verify()  # raises unless every signature verifies
    assert len(tx.signatures) == 1
    assert str(tx.message.account_keys[0]) == signer
    assert tx.signatures[0] == Signature.from_string(signature)
    assert bytes(tx.message) == bytes(Transaction.from_bytes(unsigned).message)
    assert tx.signatures[0].verify(Pubkey.from_string(signer), bytes(tx.message))


def sign_message(wallet: Keypair, message: str) -> str:
    """What the user's wallet does: ed25519 over the message's UTF-8 bytes, raw."""
    return str(wallet.sign_message(message.encode("utf-8")))


@pytest.fixture(scope="module")
def flow(sim: Sim) -> dict[str, Any]:
    """State carried from one step to the next, as a backend would store it."""
    return {"wallet": Keypair()}


def test_enclave_info_and_attestation(sim: Sim, flow: dict[str, Any]) -> None:
    with sim.client() as api:
        info = api.enclave()
        flow["enclave_id"] = info["enclave_id"]
        assert info["enclave_id"] in info["answers_for"]
        assert b64decode(info["kms_public_key"]) == sim.pinned_kms_public_key
        ready = api.ready()
        assert ready["ready"] is True and ready["kill_switch"] is False
        assert api.health() == {"status": "ok"}
        assert "# TYPE" in api.metrics()

        nonce = secrets.token_bytes(16)
        a = api.attestation(nonce.hex())
        v = verify_attestation_document(
            a["document"], sim.trust.root, nonce=nonce, pcrs=sim.trust.images[0], max_age_seconds=300
        )
        assert enclave_id_from_recipient_key(b64decode(a["public_key"])) == info["enclave_id"] == a["enclave_id"]
        assert v.document.public_key == b64decode(a["public_key"])
        with pytest.raises(CertificateChainError):
            verify_attestation_document(a["document"], aws_trust([]).root)


def test_vault_with_provenance(sim: Sim, flow: dict[str, Any]) -> None:
    wallet: Keypair = flow["wallet"]
    with sim.client() as api:
        vault = api.create_vault(wallet.pubkey())
        other = api.create_vault(str(wallet.pubkey()))
    verified = verify_provenance(vault["provenance"], vault["vault_record"], sim.trust)
    assert len(verified.chain) >= 2
    h = parse_record_header(vault["vault_record"])
    assert (h.type, h.origin, h.wallet, h.record_id) == (4, 0, str(wallet.pubkey()), vault["vault_id"])
    # Only for this record, only from the measured image, only to the sim root.
    with pytest.raises(UserDataMismatchError):
        verify_provenance(vault["provenance"], other["vault_record"], sim.trust)
    other_image = {**sim.trust.images[0], 0: bytes([7]) * 48}
    with pytest.raises(UntrustedImageError):
        verify_provenance(vault["provenance"], vault["vault_record"], ProvenanceTrust(sim.trust.root, [other_image]))
    with pytest.raises(CertificateChainError):
        verify_provenance(vault["provenance"], vault["vault_record"], aws_trust(sim.trust.images))
    flow["vault"] = vault
    flow["other_vault"] = other


def test_agent_with_provenance(sim: Sim, flow: dict[str, Any]) -> None:
    wallet: Keypair = flow["wallet"]
    vault = flow["vault"]
    with sim.client() as api:
        agent = api.create_agent(wallet=wallet.pubkey(), vault_record=vault["vault_record"], vault_provenance=vault["provenance"])
        verify_provenance(agent["provenance"], agent["agent_key_record"], sim.trust, vault=vault)
        verify_provenance(agent["provenance"], agent["agent_key_record"], sim.trust, vault=vault["vault_id"])
        with pytest.raises(UserDataMismatchError):
            verify_provenance(agent["provenance"], agent["agent_key_record"], sim.trust, vault=random_uuid())
        h = parse_record_header(agent["agent_key_record"])
        assert h.type == 2 and h.agent_pubkey == agent["agent_pubkey"] and h.kind == 0
        mnemonic = api.create_agent(
            wallet=wallet.pubkey(), vault_record=vault["vault_record"], vault_provenance=vault["provenance"],
            kind="mnemonic", account=3,
        )
        mh = parse_record_header(mnemonic["agent_key_record"])
        assert (mh.kind, mh.account) == (1, 3)
        # The enclave refuses a vault with another vault's provenance: a typed exception.
        with pytest.raises(ProvenanceInvalidError) as refused:
            api.create_agent(
                wallet=wallet.pubkey(), vault_record=flow["other_vault"]["vault_record"], vault_provenance=vault["provenance"]
            )
        assert refused.value.status == 403 and refused.value.code == "provenance_invalid"
    flow["agent"] = agent


def test_grant_from_the_wallets_signature(sim: Sim, flow: dict[str, Any]) -> None:
    wallet: Keypair = flow["wallet"]
    vault, agent = flow["vault"], flow["agent"]
    bot_id = random_uuid()
    terms = dict(wallet=wallet.pubkey(), bot_id=bot_id, agent_pubkey=agent["agent_pubkey"], ttl_seconds=900, policy=POLICY)
    with sim.client() as api:
        auth = api.authorize_grant(**terms)
        assert auth["enclave_id"] == flow["enclave_id"]
        # What the backend can check before showing the message: the policy hash and the terms it names.
        assert auth["policy_sha256"] == policy_sha256(POLICY)
        message = auth["message"]
        assert message.startswith("localhost wants you to sign in with your Solana account:\n" + str(wallet.pubkey()))
        for resource in (
            "- urn:signer:purpose:grant", f"- urn:signer:bot:{bot_id}", f"- urn:signer:agent:{agent['agent_pubkey']}",
            "- urn:signer:grant-lifetime:900", f"- urn:signer:policy-sha256:{policy_sha256(POLICY)}",
            f"- urn:signer:enclave:{flow['enclave_id']}", f"Nonce: {auth['nonce']}",
        ):
            assert resource in message.split("\n")
        signature = sign_message(wallet, message)
        signed = dict(nonce=auth["nonce"], issued_at=auth["issued_at"], signature=signature,
                      vault_record=vault["vault_record"], vault_provenance=vault["provenance"])
        grant = api.create_grant(**terms, **signed)
        assert grant["grant_id"] == grant_id(signature)
        assert grant["enclave_id"] == flow["enclave_id"]
        assert grant["expires_at"] - grant["issued_at"] == 900
        h = parse_record_header(grant["grant_record"])
        assert (h.type, h.record_id, h.enclave_id, h.agent_pubkey, h.bot_id) == (
            1, grant["grant_id"], flow["enclave_id"], agent["agent_pubkey"], bot_id)
        # The same signature again (a lost reply): the same grant, not a second one.
        again = api.create_grant(**terms, **{**signed, "signature": Signature.from_string(signature)})
        assert (again["grant_id"], again["expires_at"]) == (grant["grant_id"], grant["expires_at"])
        # Other terms than the ones signed: the signature does not verify over them.
        auth2 = api.authorize_grant(**terms)
        sig2 = sign_message(wallet, auth2["message"])
        with pytest.raises(AuthorizationSignatureInvalidError) as refused:
            api.create_grant(**{**terms, "ttl_seconds": 901}, nonce=auth2["nonce"], issued_at=auth2["issued_at"],
                             signature=sig2, vault_record=vault["vault_record"], vault_provenance=vault["provenance"])
        assert refused.value.status == 403
    flow["grant"] = grant
    flow["bot_id"] = bot_id


def test_sign_a_transfer_verified_by_solders(sim: Sim, flow: dict[str, Any]) -> None:
    agent, grant, bot_id = flow["agent"], flow["grant"], flow["bot_id"]
    source = Pubkey.from_string(agent["agent_pubkey"])
    to = Keypair().pubkey()
    tx = unsigned_transfer(source, to, 10_000_000)
    with sim.client() as api:
        r = api.sign(grant_record=grant["grant_record"], agent_key_record=agent["agent_key_record"], bot_id=bot_id, transaction=tx)
        assert r["grant_id"] == grant["grant_id"]
        assert r["route"] == flow["enclave_id"]
        check_signed(r["transaction"], agent["agent_pubkey"], r["signature"], tx)
        # The same request id and request: the same signature (charged once).
        again = api.sign(grant_record=grant["grant_record"], agent_key_record=agent["agent_key_record"], bot_id=bot_id,
                         transaction=tx, request_id=r["request_id"])
        assert again["signature"] == r["signature"] and again["transaction"] == r["transaction"]
        # The same id with another request: refused, final.
        with pytest.raises(ReplayedRequestError) as replayed:
            api.sign(grant_record=grant["grant_record"], agent_key_record=agent["agent_key_record"], bot_id=bot_id,
                     transaction=unsigned_transfer(source, to, 10_000_001), request_id=r["request_id"])
        assert (replayed.value.status, replayed.value.request_id) == (409, r["request_id"])
        # Over the per-transaction limit (the 5 000-lamport fee included): the rule and the numbers.
        with pytest.raises(PolicyDeniedError) as denied:
            api.sign(grant_record=grant["grant_record"], agent_key_record=agent["agent_key_record"], bot_id=bot_id,
                     transaction=unsigned_transfer(source, to, 1_999_995_000))
        assert denied.value.rule == "max_lamports_per_tx"
        assert denied.value.limit == 1_000_000_000
        assert denied.value.requested == 2_000_000_000


def test_bad_input_is_a_typed_exception(sim: Sim, flow: dict[str, Any]) -> None:
    agent, grant, bot_id = flow["agent"], flow["grant"], flow["bot_id"]
    with sim.client() as api:
        with pytest.raises(BadRequestError) as bad:
            api.sign(grant_record=grant["grant_record"], agent_key_record=agent["agent_key_record"], bot_id=bot_id,
                     transaction=b"not a transaction")
        assert bad.value.status == 400 and bad.value.code == "bad_request" and bad.value.detail
        # A transaction the agent does not sign.
        stranger = Keypair().pubkey()
        with pytest.raises(BadRequestError):
            api.sign(grant_record=grant["grant_record"], agent_key_record=agent["agent_key_record"], bot_id=bot_id,
                     transaction=unsigned_transfer(stranger, Keypair().pubkey(), 1))
    with SignerClient(sim.base_url, "not-the-token") as stranger_api:
        with pytest.raises(UnauthorizedError):
            stranger_api.enclave()
    with SignerClient(sim.base_url, sim.api_token, admin_token=sim.api_token) as not_admin:
        with pytest.raises(UnauthorizedError) as refused:
            not_admin.set_kill_switch(True)
        assert refused.value.status == 401


def test_kill_switch(sim: Sim, flow: dict[str, Any]) -> None:
    agent, grant, bot_id = flow["agent"], flow["grant"], flow["bot_id"]
    source = Pubkey.from_string(agent["agent_pubkey"])
    with sim.client() as api:
        def sign() -> Any:
            return api.sign(grant_record=grant["grant_record"], agent_key_record=agent["agent_key_record"],
                            bot_id=bot_id, transaction=unsigned_transfer(source, Keypair().pubkey(), 1))

        assert api.set_kill_switch(True) == {"engaged": True}
        try:
            with pytest.raises(KillSwitchError) as stopped:
                sign()
            assert stopped.value.status == 403
        finally:
            assert api.set_kill_switch(False) == {"engaged": False}
        sign()


def test_scheduled_transfer(sim: Sim, flow: dict[str, Any]) -> None:
    wallet: Keypair = flow["wallet"]
    seed = secrets.token_bytes(32)  # a key the user holds
    destination = Keypair().pubkey()
    now = int(time.time())
    sealed = seal_scheduled_record(
        kms_public_key=sim.pinned_kms_public_key, wallet=wallet.pubkey(), agent_seed=seed,
        not_before=now - 10, not_after=now + 3600, max_fee_lamports=10_000,
        intent=Intent(destination=destination, amount=123_456), enclave_id=flow["enclave_id"],
    )
    assert sealed.agent_pubkey == str(Keypair.from_seed(seed).pubkey())
    tx = unsigned_transfer(Pubkey.from_string(sealed.agent_pubkey), destination, 123_456)
    with sim.client() as api:
        r = api.sign_scheduled(scheduled_record=sealed.record, transaction=tx)
        assert r["route"] == flow["enclave_id"]
        check_signed(r["transaction"], sealed.agent_pubkey, r["signature"], tx)
        again = api.sign_scheduled(scheduled_record=sealed.record, transaction=tx, request_id=r["request_id"])
        assert again["signature"] == r["signature"]
        with pytest.raises(ReplayedRequestError):
            api.sign_scheduled(scheduled_record=sealed.record, transaction=tx)
        second = seal_scheduled_record(
            kms_public_key=sim.pinned_kms_public_key, wallet=wallet.pubkey(), agent_seed=secrets.token_bytes(32),
            not_before=now - 10, not_after=now + 3600, max_fee_lamports=10_000,
            intent=Intent(destination=destination, amount=123_456), enclave_id=flow["enclave_id"],
        )
        with pytest.raises(PolicyDeniedError) as denied:
            api.sign_scheduled(scheduled_record=second.record,
                               transaction=unsigned_transfer(Pubkey.from_string(second.agent_pubkey), destination, 123_457))
        assert denied.value.rule == "intent_mismatch"


def test_export_opened_with_hpke(sim: Sim, flow: dict[str, Any]) -> None:
    hpke = pytest.importorskip("cryptography.hazmat.primitives.hpke")
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    wallet: Keypair = flow["wallet"]
    vault, agent = flow["vault"], flow["agent"]
    browser = X25519PrivateKey.generate()
    recipient = browser.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    fields = dict(wallet=wallet.pubkey(), vault_record=vault["vault_record"], vault_provenance=vault["provenance"],
                  agent_key_record=agent["agent_key_record"], recipient=recipient)
    with sim.client() as api:
        auth = api.authorize_export(**fields)
        assert "- urn:signer:purpose:export" in auth["message"].split("\n")
        out = api.export_secret(**fields, nonce=auth["nonce"], issued_at=auth["issued_at"],
                                signature=sign_message(wallet, auth["message"]))
    assert out["kind"] == "seed" and b64decode(out["recipient"]) == recipient
    record = b64decode(agent["agent_key_record"])
    info = b"signer/export/v1" + bytes(wallet.pubkey()) + hashlib.sha256(record).digest()
    suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    seed = suite.decrypt(b64decode(out["enc"]) + b64decode(out["ciphertext"]), browser, info=info)
    assert str(Keypair.from_seed(seed).pubkey()) == agent["agent_pubkey"]


def test_revocations(sim: Sim, flow: dict[str, Any]) -> None:
    wallet: Keypair = flow["wallet"]
    vault, agent, grant, bot_id = flow["vault"], flow["agent"], flow["grant"], flow["bot_id"]
    source = Pubkey.from_string(agent["agent_pubkey"])
    with sim.client() as api:
        def sign(g: dict[str, Any], bot: str) -> Any:
            return api.sign(grant_record=g["grant_record"], agent_key_record=agent["agent_key_record"], bot_id=bot,
                            transaction=unsigned_transfer(source, Keypair().pubkey(), 1))

        # By the admin.
        revoked = api.revoke_grant(grant["grant_id"])
        assert revoked["revoked"]["grant_id"] == grant["grant_id"]
        with pytest.raises(GrantRevokedError) as refused:
            sign(grant, bot_id)
        assert (refused.value.status, refused.value.code) == (403, "grant_revoked")

        # By the wallet's own signature (API token only): a second grant.
        bot2 = random_uuid()
        terms = dict(wallet=wallet.pubkey(), bot_id=bot2, agent_pubkey=agent["agent_pubkey"], ttl_seconds=600, policy=POLICY)
        auth = api.authorize_grant(**terms)
        second = api.create_grant(**terms, nonce=auth["nonce"], issued_at=auth["issued_at"],
                                  signature=sign_message(wallet, auth["message"]),
                                  vault_record=vault["vault_record"], vault_provenance=vault["provenance"])
        sign(second, bot2)
        message = api.authorize_revoke(wallet=wallet.pubkey(), grant_id=second["grant_id"])
        assert "- urn:signer:purpose:revoke" in message["message"].split("\n")
        signed = dict(wallet=wallet.pubkey(), grant_id=second["grant_id"], nonce=message["nonce"],
                      issued_at=message["issued_at"], signature=sign_message(wallet, message["message"]))
        out = api.revoke_signed(**signed)
        assert out["revoked"]["grant_id"] == second["grant_id"]
        with pytest.raises(GrantRevokedError):
            sign(second, bot2)
        # The same signed revocation again (a lost reply) is answered again.
        assert api.revoke_signed(**signed)["revoked"]["grant_id"] == second["grant_id"]
        # Every record of the wallet, by the admin; a wallet-signed "all" needs a signature too.
        assert api.revoke_wallet(wallet.pubkey())["revoked"]["wallet"] == str(wallet.pubkey())
        everything = api.authorize_revoke(wallet=wallet.pubkey(), all=True)
        api.revoke_signed(wallet=wallet.pubkey(), all=True, nonce=everything["nonce"], issued_at=everything["issued_at"],
                          signature=sign_message(wallet, everything["message"]))
        # A signature by another wallet revokes nothing: refused with its code.
        other = api.authorize_revoke(wallet=wallet.pubkey(), all=True)
        with pytest.raises(SignerApiError) as forged:
            api.revoke_signed(wallet=wallet.pubkey(), all=True, nonce=other["nonce"], issued_at=other["issued_at"],
                              signature=sign_message(Keypair(), other["message"]))
        assert forged.value.code == "authorization_signature_invalid"
        assert type(forged.value) is AuthorizationSignatureInvalidError
