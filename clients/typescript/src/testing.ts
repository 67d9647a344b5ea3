// A Wallet Standard test wallet (`solana:signMessage` only) holding an ed25519 keypair in memory.
// For tests, demos and the browser example: a real user signs with their own wallet.

import { ed25519 } from "@noble/curves/ed25519.js";

import { type Bytes, secureRandom, toBase58 } from "./bytes.js";
import {
  SOLANA_SIGN_MESSAGE,
  type SolanaSignMessageInputLike,
  type SolanaSignMessageOutputLike,
  type WalletAccountLike,
  type WalletLike,
} from "./wallet.js";

/** An in-memory wallet implementing the Wallet Standard `solana:signMessage` feature. */
export class TestWallet implements WalletLike {
  readonly version = "1.0.0" as const;
  readonly name = "Test wallet";
  readonly icon = "data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciLz4=" as const;
  readonly chains = ["solana:localnet", "solana:devnet", "solana:mainnet"] as const;
  readonly accounts: readonly (WalletAccountLike & {
    readonly chains: readonly `${string}:${string}`[];
    readonly features: readonly `${string}:${string}`[];
  })[];
  readonly features: {
    readonly [SOLANA_SIGN_MESSAGE]: {
      readonly version: "1.1.0";
      readonly signMessage: (...inputs: readonly SolanaSignMessageInputLike[]) => Promise<readonly SolanaSignMessageOutputLike[]>;
    };
  };
  /** What was signed, in order (tests inspect it). */
  readonly signed: string[] = [];
  readonly #seed: Bytes;

  /** A wallet for a 32-byte ed25519 seed (random by default). */
  constructor(seed: Bytes = secureRandom(32)) {
    if (seed.length !== 32) throw new TypeError("a seed is 32 bytes");
    this.#seed = Uint8Array.from(seed);
    const publicKey = ed25519.getPublicKey(this.#seed);
    const account = {
      address: toBase58(publicKey),
      publicKey,
      chains: this.chains,
      features: [SOLANA_SIGN_MESSAGE] as const,
    };
    this.accounts = [account];
    this.features = {
      [SOLANA_SIGN_MESSAGE]: {
        version: "1.1.0",
        signMessage: async (...inputs) =>
          inputs.map(({ account: a, message }) => {
            if (a.address !== account.address) throw new Error(`unknown account ${a.address}`);
            this.signed.push(new TextDecoder().decode(message));
            return { signedMessage: message, signature: ed25519.sign(message, this.#seed), signatureType: "ed25519" as const };
          }),
      },
    };
  }

  /** The wallet address (base58). */
  get address(): string {
    return this.accounts[0]!.address;
  }
}
