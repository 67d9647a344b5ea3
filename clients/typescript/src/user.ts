// The user's own powers, browser half (SPEC §15; `enclave/core/src/enclave/user.rs`): revoke the
// wallet's grants, and export a secret (a vault's master key, an agent's seed or its recovery
// phrase) to an X25519 key only this browser holds. Each needs the wallet's signature over a
// message the enclave rendered; the browser renders the same message from what the user chose
// and refuses to have anything else signed.
//
// Export is HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256) (KEM 0x0020), HKDF-SHA256
// (KDF 0x0001), AES-256-GCM (AEAD 0x0002), with
//
//   info = "signer/export/v1" ‖ wallet[32] ‖ SHA-256(exported record)[32]
//   aad  = empty
//
// opened here with @hpke/core on WebCrypto (the X25519 private key is generated non-extractable).
// The plaintext is the vault's master key (32 bytes), the agent's ed25519 seed (32), or the
// agent's BIP39 entropy (16..=32 bytes: the recovery phrase, English words; the key is derived
// along m/44'/501'/{account}'/0' with SLIP-0010, as Phantom and Solflare do).

import { Aes256Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from "@hpke/core";
import { ed25519 } from "@noble/curves/ed25519.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256, sha512 } from "@noble/hashes/sha2.js";
import { entropyToMnemonic, mnemonicToSeed } from "@scure/bip39";
import { wordlist as english } from "@scure/bip39/wordlists/english.js";

import {
  type AuthorizationMessage,
  type ExportPurpose,
  type MessageDomain,
  type RevokePurpose,
  checkAuthorizationMessage,
} from "./authorization.js";
import { type Bytes, concat, equalBytes, fromBase64, pubkeyBytes, toBase58, toBase64, toHex, utf8 } from "./bytes.js";
import { parseRecordHeader } from "./records.js";
import { type WalletAccountLike, type WalletLike, signAuthorizationWithWallet } from "./wallet.js";

/** Domain of the HPKE `info` of an export. */
export const EXPORT_INFO_DOMAIN = "signer/export/v1";

/** Thrown when an export cannot be opened or does not hold what was asked for. */
export class ExportError extends Error {
  override name = "ExportError";
}

const asBytes = (v: string | Bytes): Bytes => (typeof v === "string" ? fromBase64(v) : v);

// ------------------------------------------------------------------------------------------------
// Revoke

/** The routes a revocation goes through: `SignerClient` has them, or a backend relaying them. */
export interface RevokeApi {
  authorizeRevoke(req: { wallet: string } & ({ grant_id: string } | { all: true })): Promise<AuthorizationMessage>;
  revokeSigned(
    req: { wallet: string; nonce: string; issued_at: number; signature: string } & ({ grant_id: string } | { all: true }),
  ): Promise<unknown>;
}

export interface RevokeWithWalletParams {
  /** The frontend's pinned `[authorization]` config (registry included). */
  domain: MessageDomain;
  /** The Wallet Standard wallet and, optionally, the account to use (default: the one `address` names). */
  wallet: WalletLike;
  account?: WalletAccountLike;
  /** The wallet whose grants are revoked, base58. */
  address: string;
  /** One grant (or scheduled record) by id, or every one the wallet made up to now. */
  scope: { grant_id: string } | { all: true };
  api: RevokeApi;
}

export interface RevokeWithWalletResult<R> {
  /** The message the wallet signed. */
  message: string;
  signature_base58: string;
  /** What `POST /v1/grants/revoke` answered. */
  result: R;
}

/**
 * The whole revocation from the browser: asks for the revoke message, checks it is exactly the
 * one `scope` renders (purpose `revoke`), has the wallet sign its raw bytes (`solana:signMessage`)
 * and submits the signature (`POST /v1/grants/revoke`, API token, on the backend). A wallet can
 * revoke only its own grants: naming another wallet's grant id revokes nothing of it.
 */
export async function revokeWithWallet<A extends RevokeApi>(
  params: RevokeWithWalletParams & { api: A },
): Promise<RevokeWithWalletResult<Awaited<ReturnType<A["revokeSigned"]>>>> {
  const scope = "all" in params.scope && params.scope.all === true ? ({ all: true } as const) : { grant_id: (params.scope as { grant_id: string }).grant_id };
  const purpose: RevokePurpose = "all" in scope ? { kind: "revoke", all: true } : { kind: "revoke", grant_id: scope.grant_id };
  const authorization = await params.api.authorizeRevoke({ wallet: params.address, ...scope });
  const message = checkAuthorizationMessage(params.domain, { wallet: params.address, purpose }, authorization);
  const options = params.account === undefined ? {} : { account: params.account };
  const signed = await signAuthorizationWithWallet(params.wallet, message, options);
  const result = (await params.api.revokeSigned({
    wallet: params.address,
    ...scope,
    nonce: authorization.nonce,
    issued_at: authorization.issued_at,
    signature: signed.signature_base58,
  })) as Awaited<ReturnType<A["revokeSigned"]>>;
  return { message, signature_base58: signed.signature_base58, result };
}

// ------------------------------------------------------------------------------------------------
// Export: the browser's key, the message, opening the reply

/** The browser's HPKE key pair for an export. */
export interface ExportKey {
  /** WebCrypto X25519 key pair; the private key is not extractable. */
  keyPair: CryptoKeyPair;
  /** The raw 32-byte public key: the export's `recipient`. */
  publicKey: Bytes;
}

/**
 * A fresh X25519 key pair from WebCrypto (`crypto.subtle.generateKey({name: "X25519"})`), the
 * private key non-extractable: the exported secret can be opened only in this page, with this key.
 */
export async function generateExportKey(): Promise<ExportKey> {
  const subtle = globalThis.crypto?.subtle;
  if (subtle === undefined) throw new ExportError("WebCrypto is not available (a secure context is needed)");
  let keyPair: CryptoKeyPair;
  try {
    keyPair = (await subtle.generateKey({ name: "X25519" }, false, ["deriveBits"])) as CryptoKeyPair;
  } catch (e) {
    throw new ExportError(`this browser's WebCrypto has no X25519: ${e instanceof Error ? e.message : String(e)}`);
  }
  const publicKey = new Uint8Array(await subtle.exportKey("raw", keyPair.publicKey));
  if (publicKey.length !== 32) throw new ExportError(`an X25519 public key is 32 bytes, not ${publicKey.length}`);
  return { keyPair, publicKey };
}

/** What an export takes out, from the records the user holds. */
export interface ExportSubject {
  /** The vault record (bytes or base64): its master key is exported, or it opens the agent record. */
  vault_record: string | Bytes;
  /** The agent key record whose secret is exported; absent to export the vault's master key. */
  agent_key_record?: string | Bytes;
  /** The browser's X25519 public key (32 bytes). */
  recipient: Bytes;
}

/**
 * The export purpose the user's own records render: the vault (its id from the vault record's
 * header) or the agent (its key and kind from the agent record's header), the SHA-256 of that
 * record, and the recipient key. The records' headers are read without opening anything.
 */
export function exportPurpose(wallet: string | Bytes, subject: ExportSubject): ExportPurpose {
  const owner = toBase58(pubkeyBytes(wallet, "wallet"));
  if (subject.recipient.length !== 32) throw new ExportError("the recipient is a 32-byte X25519 public key");
  const vault = parseRecordHeader(asBytes(subject.vault_record));
  if (vault.type !== 4) throw new ExportError(`the vault record is a record of type ${vault.type}`);
  if (vault.wallet !== owner) throw new ExportError(`the vault belongs to ${vault.wallet}, not ${owner}`);
  if (subject.agent_key_record === undefined) {
    return {
      kind: "export",
      vault_id: vault.record_id,
      record_sha256: sha256(asBytes(subject.vault_record)),
      recipient: subject.recipient,
    };
  }
  const record = asBytes(subject.agent_key_record);
  const agent = parseRecordHeader(record);
  if (agent.type !== 2) throw new ExportError(`the agent key record is a record of type ${agent.type}`);
  if (agent.wallet !== owner) throw new ExportError(`the agent belongs to ${agent.wallet}, not ${owner}`);
  return {
    kind: "export",
    agent_pubkey: agent.agent_pubkey,
    mnemonic: agent.kind === 1,
    record_sha256: sha256(record),
    recipient: subject.recipient,
  };
}

/** `"signer/export/v1" ‖ wallet ‖ SHA-256(record)`: the HPKE `info` of an export of `record`. */
export function exportInfo(wallet: string | Bytes, record: string | Bytes): Bytes {
  return concat(utf8(EXPORT_INFO_DOMAIN), pubkeyBytes(wallet, "wallet"), sha256(asBytes(record)));
}

const suite = () =>
  new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes256Gcm() });

/**
 * Opens an export's HPKE reply with the browser's key: base mode, DHKEM(X25519, HKDF-SHA256),
 * HKDF-SHA256, AES-256-GCM, `info` bound to the wallet and the exported record, no AAD. Throws an
 * `ExportError` if it does not open (another key, wallet or record, or a changed ciphertext).
 */
export async function openExport(params: {
  key: ExportKey;
  wallet: string | Bytes;
  /** The exported record: the vault record, or the agent key record. */
  record: string | Bytes;
  enc: string | Bytes;
  ciphertext: string | Bytes;
}): Promise<Bytes> {
  const enc = asBytes(params.enc);
  if (enc.length !== 32) throw new ExportError(`HPKE enc is 32 bytes for X25519, not ${enc.length}`);
  const info = exportInfo(params.wallet, params.record);
  try {
    const plain = await suite().open(
      { recipientKey: params.key.keyPair, enc: enc.slice().buffer, info: info.slice().buffer },
      asBytes(params.ciphertext).slice().buffer,
    );
    return new Uint8Array(plain);
  } catch (e) {
    throw new ExportError(`the export does not open with this key, wallet and record: ${e instanceof Error ? e.message : String(e)}`);
  }
}

// ------------------------------------------------------------------------------------------------
// Reading what was exported

/** SLIP-0010 hardened index bit. */
const HARDENED = 0x8000_0000;

/** The Solana path of an account, `m/44'/501'/{account}'/0'`, as indexes without the hardened bit. */
export function solanaPath(account: number): number[] {
  if (!Number.isInteger(account) || account < 0 || account >= HARDENED) {
    throw new ExportError(`account index ${account} must be below 2^31`);
  }
  return [44, 501, account, 0];
}

/** SLIP-0010 ed25519 derivation of `seed` along a hardened path: the 32-byte ed25519 seed. */
export function slip10Ed25519(seed: Bytes, path: readonly number[]): Bytes {
  let node = hmac(sha512, utf8("ed25519 seed"), seed);
  for (const index of path) {
    const data = new Uint8Array(37);
    data.set(node.subarray(0, 32), 1);
    new DataView(data.buffer).setUint32(33, (index | HARDENED) >>> 0, false);
    node = hmac(sha512, node.subarray(32), data);
  }
  return node.slice(0, 32);
}

/** An exported secret, read: what the user saves. */
export type ExportedSecret =
  | { kind: "vault"; vault_id: string; /** The vault's 32-byte master key. */ master_key: Bytes }
  | {
      kind: "seed";
      /** The agent's 32-byte ed25519 seed (`Keypair.fromSeed`; a keypair file is seed ‖ public key). */
      seed: Bytes;
      /** The public key the seed derives: equal to the agent record's. */
      agent_pubkey: string;
    }
  | {
      kind: "mnemonic";
      /** The recovery phrase: 12–24 English BIP39 words, space-separated. */
      words: string;
      /** The BIP39 entropy the words encode. */
      entropy: Bytes;
      /** The account of the derivation path `m/44'/501'/{account}'/0'` (no passphrase). */
      account: number;
      path: string;
      /** The public key the words derive on that path: equal to the agent record's. */
      agent_pubkey: string;
    };

/**
 * Reads an opened export: the vault's master key, or the agent's seed or recovery phrase, checked
 * against the record it came from (a seed or phrase must derive the record's agent key, so a
 * wrong secret is caught here rather than after the user moved funds to it).
 */
export async function readExportedSecret(
  kind: string,
  secret: Bytes,
  subject: { vault_record: string | Bytes; agent_key_record?: string | Bytes },
): Promise<ExportedSecret> {
  if (subject.agent_key_record === undefined) {
    if (kind !== "vault") throw new ExportError(`asked for the vault's master key, got a ${kind}`);
    if (secret.length !== 32) throw new ExportError(`a master key is 32 bytes, not ${secret.length}`);
    return { kind: "vault", vault_id: parseRecordHeader(asBytes(subject.vault_record)).record_id, master_key: secret };
  }
  const agent = parseRecordHeader(asBytes(subject.agent_key_record));
  if (agent.type !== 2) throw new ExportError("not an agent key record");
  if (agent.kind === 0) {
    if (kind !== "seed") throw new ExportError(`asked for a seed, got a ${kind}`);
    if (secret.length !== 32) throw new ExportError(`an agent seed is 32 bytes, not ${secret.length}`);
    const agentPubkey = toBase58(ed25519.getPublicKey(secret));
    if (agentPubkey !== agent.agent_pubkey) throw new ExportError(`the seed derives ${agentPubkey}, not the agent ${agent.agent_pubkey}`);
    return { kind: "seed", seed: secret, agent_pubkey: agentPubkey };
  }
  if (kind !== "mnemonic") throw new ExportError(`asked for a recovery phrase, got a ${kind}`);
  if (![16, 20, 24, 28, 32].includes(secret.length)) {
    throw new ExportError(`BIP39 entropy is 16, 20, 24, 28 or 32 bytes, not ${secret.length}`);
  }
  const account = agent.account ?? 0;
  const words = entropyToMnemonic(secret, english);
  const seed = await mnemonicToSeed(words);
  const key = slip10Ed25519(seed, solanaPath(account));
  const agentPubkey = toBase58(ed25519.getPublicKey(key));
  if (agentPubkey !== agent.agent_pubkey) {
    throw new ExportError(`the recovery phrase derives ${agentPubkey}, not the agent ${agent.agent_pubkey}`);
  }
  return { kind: "mnemonic", words, entropy: secret, account, path: `m/44'/501'/${account}'/0'`, agent_pubkey: agentPubkey };
}

// ------------------------------------------------------------------------------------------------
// Export: the whole flow

/** The routes an export goes through: `SignerClient` has them, or a backend relaying them. */
export interface ExportApi {
  authorizeExport(req: {
    wallet: string;
    vault_record: string;
    vault_provenance: string;
    agent_key_record?: string;
    recipient: string;
  }): Promise<AuthorizationMessage>;
  exportSecret(req: {
    wallet: string;
    vault_record: string;
    vault_provenance: string;
    agent_key_record?: string;
    recipient: string;
    nonce: string;
    issued_at: number;
    signature: string;
  }): Promise<{ kind: string; enc: string; ciphertext: string; recipient?: string }>;
}

export interface ExportWithWalletParams {
  domain: MessageDomain;
  wallet: WalletLike;
  account?: WalletAccountLike;
  /** The wallet that owns the vault, base58. */
  address: string;
  vault_record: string | Bytes;
  vault_provenance: string | Bytes;
  /** The agent whose secret is exported; absent: the vault's master key. */
  agent_key_record?: string | Bytes;
  api: ExportApi;
  /** Default: a fresh `generateExportKey()`. */
  key?: ExportKey;
}

export type ExportWithWalletResult = ExportedSecret & {
  /** The message the wallet signed. */
  message: string;
  /** The recipient key the secret was sealed to, hex. */
  recipient_hex: string;
};

/**
 * The whole export from the browser: a fresh non-extractable X25519 key, the export message
 * checked to name exactly this record and this key, the wallet's signature over its raw bytes,
 * `POST /v1/export`, and the HPKE reply opened and read (`readExportedSecret`). Nothing but the
 * public key and the sealed reply passes the backend.
 */
export async function exportWithWallet(params: ExportWithWalletParams): Promise<ExportWithWalletResult> {
  const key = params.key ?? (await generateExportKey());
  const subject = {
    vault_record: asBytes(params.vault_record),
    ...(params.agent_key_record === undefined ? {} : { agent_key_record: asBytes(params.agent_key_record) }),
    recipient: key.publicKey,
  };
  const purpose = exportPurpose(params.address, subject);
  const body = {
    wallet: params.address,
    vault_record: toBase64(subject.vault_record),
    vault_provenance: typeof params.vault_provenance === "string" ? params.vault_provenance : toBase64(params.vault_provenance),
    ...(subject.agent_key_record === undefined ? {} : { agent_key_record: toBase64(subject.agent_key_record) }),
    recipient: toBase64(key.publicKey),
  };
  const authorization = await params.api.authorizeExport(body);
  const message = checkAuthorizationMessage(params.domain, { wallet: params.address, purpose }, authorization);
  const options = params.account === undefined ? {} : { account: params.account };
  const signed = await signAuthorizationWithWallet(params.wallet, message, options);
  const reply = await params.api.exportSecret({
    ...body,
    nonce: authorization.nonce,
    issued_at: authorization.issued_at,
    signature: signed.signature_base58,
  });
  if (reply.recipient !== undefined && !equalBytes(fromBase64(reply.recipient), key.publicKey)) {
    throw new ExportError("the reply is sealed to another recipient key");
  }
  const record = subject.agent_key_record ?? subject.vault_record;
  const secret = await openExport({ key, wallet: params.address, record, enc: reply.enc, ciphertext: reply.ciphertext });
  const read = await readExportedSecret(reply.kind, secret, subject);
  return { ...read, message, recipient_hex: toHex(key.publicKey) };
}
