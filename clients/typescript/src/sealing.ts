// Sealing records in the browser (or Node) with WebCrypto alone: RSA-OAEP SHA-256 to the KMS
// public key wraps a fresh 32-byte record key, AES-256-GCM under that key seals the secret with
// the header as AAD (docs/records.md):
//
//   record = AAD ‖ wrap_alg=1 ‖ len u16 LE ‖ RSA-OAEP-SHA-256(KMS key, record key) ‖ iv[12]
//            ‖ ciphertext ‖ tag[16]
//
// Only an attested enclave can have KMS unwrap the record key, so the backend that stores the
// record, and the host that relays it, never see the secret.
//
// The KMS public key must be PINNED by the frontend (shipped with it, taken from
// `aws kms get-public-key` by whoever deploys it). `GET /v1/enclave` returns it too, but that answer
// comes through the host: a compromised host could hand out a key of its own and read everything
// sealed to it. Use the API's copy in development and simulation only.

import { ed25519 } from "@noble/curves/ed25519.js";

import {
  type Bytes,
  type RandomSource,
  type U64,
  concat,
  equalBytes,
  idBytes,
  le16,
  secureRandom,
  toBase58,
  uuidText,
} from "./bytes.js";
import {
  IV_LEN,
  MAX_WRAPPED_KEY_LEN,
  type Intent,
  RecordError,
  scheduledAad,
  vaultAad,
} from "./records.js";

/** `wrap_alg` 1: RSAES-OAEP-SHA-256 to the KMS execution key. */
export const WRAP_RSAES_OAEP_SHA_256 = 1;

/** Key sizes KMS offers for an `ENCRYPT_DECRYPT` RSA key that the enclave's config accepts. */
const KMS_RSA_BITS = [3072, 4096];

/** A copy backed by a plain ArrayBuffer, as WebCrypto's types want it. */
const own = (b: Bytes): Uint8Array<ArrayBuffer> => new Uint8Array(b);

function subtle(): SubtleCrypto {
  const s = globalThis.crypto?.subtle;
  if (s === undefined) {
    throw new Error(
      "WebCrypto (crypto.subtle) is not available: browsers expose it only to secure contexts (https:// or http://localhost)",
    );
  }
  return s;
}

/**
 * Imports the KMS execution key (SubjectPublicKeyInfo DER, as `aws kms get-public-key` returns
 * it, base64-decoded) for RSA-OAEP SHA-256. Refuses anything but an RSA-3072/4096 key with
 * exponent 65537.
 */
export async function importKmsPublicKey(spkiDer: Bytes): Promise<CryptoKey> {
  let key: CryptoKey;
  try {
    key = await subtle().importKey("spki", own(spkiDer), { name: "RSA-OAEP", hash: "SHA-256" }, false, [
      "encrypt",
    ]);
  } catch (e) {
    throw new RecordError(`the KMS public key is not an RSA SubjectPublicKeyInfo: ${String(e)}`);
  }
  const alg = key.algorithm as RsaHashedKeyAlgorithm;
  if (!KMS_RSA_BITS.includes(alg.modulusLength)) {
    throw new RecordError(`the KMS key is RSA-${alg.modulusLength}; expected RSA-3072 or RSA-4096`);
  }
  if (!equalBytes(alg.publicExponent, Uint8Array.of(1, 0, 1))) {
    throw new RecordError("the KMS key's public exponent is not 65537");
  }
  return key;
}

/** Options of the sealing functions. */
export interface SealOptions {
  /**
   * Where the record key, IV and (when not given) ids come from. Defaults to
   * `crypto.getRandomValues`; tests inject fixed bytes (return fresh arrays: the record key's is
   * zeroed after use). RSA-OAEP's own padding randomness is WebCrypto's and cannot be injected.
   */
  random?: RandomSource;
}

type KmsKey = Bytes | CryptoKey;

async function kmsKey(key: KmsKey): Promise<CryptoKey> {
  return key instanceof Uint8Array ? importKmsPublicKey(key) : key;
}

/**
 * `AAD ‖ 01 ‖ len ‖ wrapped record key ‖ iv ‖ GCM(record key, secret, AAD)`. The record key exists
 * only for the duration of this call and is zeroed after use.
 */
export async function sealWithKmsKey(
  kms: KmsKey,
  aad: Bytes,
  secret: Bytes,
  options: SealOptions = {},
): Promise<Bytes> {
  const random = options.random ?? secureRandom;
  const key = await kmsKey(kms);
  const drawn = random(32);
  const recordKey = own(drawn);
  drawn.fill(0);
  const iv = own(random(IV_LEN));
  if (recordKey.length !== 32 || iv.length !== IV_LEN) throw new RecordError("random source returned the wrong length");
  const plaintext = own(secret);
  try {
    const wrapped = new Uint8Array(await subtle().encrypt({ name: "RSA-OAEP" }, key, recordKey));
    if (wrapped.length === 0 || wrapped.length > MAX_WRAPPED_KEY_LEN) {
      throw new RecordError(`wrapped key is ${wrapped.length} bytes`);
    }
    const aes = await subtle().importKey("raw", recordKey, "AES-GCM", false, ["encrypt"]);
    const sealed = new Uint8Array(
      await subtle().encrypt({ name: "AES-GCM", iv, additionalData: own(aad), tagLength: 128 }, aes, plaintext),
    );
    return concat(aad, Uint8Array.of(WRAP_RSAES_OAEP_SHA_256), le16(wrapped.length), wrapped, iv, sealed);
  } finally {
    recordKey.fill(0);
    plaintext.fill(0);
  }
}

/** What a scheduled transfer binds (besides the agent, which the seed determines). */
export interface ScheduledRecordParams {
  /** The KMS execution key: SPKI DER (pinned by the frontend) or an imported `CryptoKey`. */
  kmsPublicKey: KmsKey;
  /** The user's wallet (base58 or 32 bytes). */
  wallet: string | Bytes;
  /** The agent's 32-byte ed25519 private seed, held by the user's unlocked wallet. */
  agentSeed: Bytes;
  /** Unix seconds. */
  not_before: U64;
  /** Unix seconds, at most 48 h after `not_before`. */
  not_after: U64;
  max_fee_lamports: U64;
  intent: Intent;
  /** The enclave instance that will sign it and hold its single-use mark (`GET /v1/enclave`). */
  enclave_id: string | Bytes;
  /** Unix seconds; default now. */
  created_at?: U64;
  /** Default: random. */
  schedule_id?: string | Bytes;
}

/** A sealed scheduled record. */
export interface SealedScheduledRecord {
  record: Bytes;
  schedule_id: string;
  /** The agent the enclave will sign as (derived from the seed), base58. */
  agent_pubkey: string;
  aad: Bytes;
}

/** The ed25519 public key (base58) of a 32-byte seed. */
export function agentPublicKey(seed: Bytes): string {
  if (seed.length !== 32) throw new RecordError(`an agent seed is 32 bytes, not ${seed.length}`);
  return toBase58(ed25519.getPublicKey(seed));
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

/**
 * Seals a scheduled-key record (type 3): the enclave will sign exactly one transaction with the
 * agent key, a transfer matching `intent`, with fees up to `max_fee_lamports`, inside
 * `[not_before, not_after]`, on the enclave `enclave_id`.
 */
export async function sealScheduledRecord(
  params: ScheduledRecordParams,
  options: SealOptions = {},
): Promise<SealedScheduledRecord> {
  const random = options.random ?? secureRandom;
  const agent = agentPublicKey(params.agentSeed);
  const scheduleId = params.schedule_id === undefined ? random(16) : idBytes(params.schedule_id, "schedule_id");
  const aad = scheduledAad({
    wallet: params.wallet,
    schedule_id: scheduleId,
    agent_pubkey: agent,
    not_before: params.not_before,
    not_after: params.not_after,
    max_fee_lamports: params.max_fee_lamports,
    intent: params.intent,
    created_at: params.created_at ?? nowSeconds(),
    enclave_id: params.enclave_id,
  });
  const record = await sealWithKmsKey(params.kmsPublicKey, aad, params.agentSeed, { random });
  return { record, schedule_id: uuidText(scheduleId), agent_pubkey: agent, aad };
}

/** What an imported vault binds. */
export interface ImportedVaultParams {
  kmsPublicKey: KmsKey;
  wallet: string | Bytes;
  /** The wallet's 32-byte master key, which this browser already holds. */
  umk: Bytes;
  /** Unix seconds; default now. */
  created_at?: U64;
  /** Default: random. */
  vault_id?: string | Bytes;
}

export interface SealedVaultRecord {
  record: Bytes;
  vault_id: string;
  aad: Bytes;
}

/**
 * Seals an imported vault (type 4, origin 1) from a UMK the browser holds. It becomes usable once
 * the wallet signs the import message (`POST /v1/authorizations/import`, `/v1/vaults/import`).
 */
export async function sealImportedVault(
  params: ImportedVaultParams,
  options: SealOptions = {},
): Promise<SealedVaultRecord> {
  const random = options.random ?? secureRandom;
  if (params.umk.length !== 32) throw new RecordError(`a UMK is 32 bytes, not ${params.umk.length}`);
  const vaultId = params.vault_id === undefined ? random(16) : idBytes(params.vault_id, "vault_id");
  const aad = vaultAad({
    wallet: params.wallet,
    vault_id: vaultId,
    created_at: params.created_at ?? nowSeconds(),
    origin: 1,
  });
  const record = await sealWithKmsKey(params.kmsPublicKey, aad, params.umk, { random });
  return { record, vault_id: uuidText(vaultId), aad };
}
