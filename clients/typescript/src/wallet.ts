// Asking a Wallet Standard wallet (`solana:signMessage`) to sign an authorization message, and the
// strict ed25519 check the enclave applies (canonical, not small-order key and R; reduced S).
//
// The types below are the structural subset of `@wallet-standard/base` and
// `@solana/wallet-standard-features` this module uses, so any Wallet Standard wallet (Phantom,
// Solflare, Backpack, a wallet adapter's `wallet`) fits without this package depending on them.

import { ed25519 } from "@noble/curves/ed25519.js";

import { type Bytes, equalBytes, fromBase58, toBase58, utf8 } from "./bytes.js";

/** A Uint8Array that is not written to (`ReadonlyUint8Array` of `@wallet-standard/base`). */
export interface ReadonlyBytes extends Omit<Uint8Array, "copyWithin" | "fill" | "reverse" | "set" | "sort"> {
  readonly [n: number]: number;
}

/** A wallet account (`WalletAccount` of `@wallet-standard/base`). */
export interface WalletAccountLike {
  readonly address: string;
  readonly publicKey: ReadonlyBytes;
  readonly chains?: readonly string[];
  readonly features?: readonly string[];
}

export interface SolanaSignMessageInputLike {
  readonly account: WalletAccountLike;
  readonly message: Uint8Array;
}

export interface SolanaSignMessageOutputLike {
  readonly signedMessage: Uint8Array;
  readonly signature: Uint8Array;
  readonly signatureType?: "ed25519";
}

/** The `solana:signMessage` feature (`SolanaSignMessageFeature`). */
export interface SolanaSignMessageFeatureLike {
  readonly version: string;
  readonly signMessage: (
    ...inputs: readonly SolanaSignMessageInputLike[]
  ) => Promise<readonly SolanaSignMessageOutputLike[]>;
}

/** A Wallet Standard wallet, as far as signing a message goes. */
export interface WalletLike {
  readonly name?: string;
  readonly accounts: readonly WalletAccountLike[];
  readonly features: { readonly [name: string]: unknown };
}

export const SOLANA_SIGN_MESSAGE = "solana:signMessage";

/** Why a wallet could not produce a signature the enclave would accept. */
export class WalletSignError extends Error {
  override name = "WalletSignError";
}

/** Strict ed25519 verification, as the enclave does it (`verify_strict` with canonical checks). */
export function verifyEd25519Strict(publicKey: Bytes, message: Bytes, signature: Bytes): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  try {
    for (const encoded of [publicKey, signature.subarray(0, 32)]) {
      // zip215 = false: refuses non-canonical encodings (RFC 8032 decoding).
      const point = ed25519.Point.fromBytes(encoded, false);
      if (point.isSmallOrder()) return false;
      if (!equalBytes(point.toBytes(), encoded)) return false;
    }
    return ed25519.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}

/** The wallet address (second line) of an authorization message. */
export function messageWallet(message: string): string {
  const line = message.split("\n")[1];
  if (line === undefined) throw new WalletSignError("not an authorization message");
  return line;
}

/** A signature as the API takes it. */
export interface WalletSignature {
  signature: Bytes;
  /** Base58, as `POST /v1/grants` and `/v1/vaults/import` take it. */
  signature_base58: string;
  /** The account that signed. */
  address: string;
}

/**
 * Asks `wallet` to sign `message` (the exact text from the enclave, already checked with
 * `checkAuthorizationMessage`) with the account the message names, and checks the result the way
 * the enclave will: the wallet signed exactly these bytes (no prefix or envelope), and the
 * signature verifies strictly under that account's key. A wallet that altered the message or the
 * account fails here, in the browser, instead of at the enclave.
 */
export async function signAuthorizationWithWallet(
  wallet: WalletLike,
  message: string,
  options: { account?: WalletAccountLike } = {},
): Promise<WalletSignature> {
  const feature = wallet.features[SOLANA_SIGN_MESSAGE] as SolanaSignMessageFeatureLike | undefined;
  if (feature === undefined || typeof feature.signMessage !== "function") {
    throw new WalletSignError(
      `${wallet.name ?? "the wallet"} does not support ${SOLANA_SIGN_MESSAGE}`,
    );
  }
  const address = messageWallet(message);
  const account = options.account ?? wallet.accounts.find((a) => a.address === address);
  if (account === undefined) {
    throw new WalletSignError(`the wallet has no account ${address} (the message is for it)`);
  }
  if (account.address !== address) {
    throw new WalletSignError(`the message is for ${address}, not for account ${account.address}`);
  }
  const publicKey = fromBase58(account.address, 32, "account address");
  if (!equalBytes(publicKey, Uint8Array.from(account.publicKey as ArrayLike<number>))) {
    throw new WalletSignError("the account's publicKey is not its address");
  }
  if (account.features !== undefined && !account.features.includes(SOLANA_SIGN_MESSAGE)) {
    throw new WalletSignError(`account ${address} does not support ${SOLANA_SIGN_MESSAGE}`);
  }
  const bytes = utf8(message);
  const [output] = await feature.signMessage({ account, message: bytes });
  if (output === undefined) throw new WalletSignError("the wallet returned no signature");
  if (output.signatureType !== undefined && output.signatureType !== "ed25519") {
    throw new WalletSignError(`unexpected signature type ${String(output.signatureType)}`);
  }
  if (!equalBytes(Uint8Array.from(output.signedMessage), bytes)) {
    throw new WalletSignError(
      "the wallet signed other bytes than the message (a prefix or an envelope): the enclave verifies the raw message only",
    );
  }
  const signature = Uint8Array.from(output.signature);
  if (!verifyEd25519Strict(publicKey, bytes, signature)) {
    throw new WalletSignError("the wallet's signature does not verify (strict ed25519) for its account");
  }
  return { signature, signature_base58: toBase58(signature), address };
}
