/**
 * CLIP prompt tokenisation from the bundle's tokenizer.json (Hugging Face `tokenizers`, the same Rust
 * code transformers uses). Prompts are truncated and padded to the model's fixed token length.
 */
import { Tokenizer } from 'tokenizers';

import { ErrorCode, Sam3Error } from './errors.js';

export interface TokenBatch {
  ids: Int32Array;
  mask: Uint8Array;
  count: number;
  length: number;
}

export class PromptTokenizer {
  private constructor(
    private readonly tokenizer: Tokenizer,
    readonly length: number,
  ) {}

  static load(file: string, length: number, padId: number): PromptTokenizer {
    let tok: Tokenizer;
    try {
      tok = Tokenizer.fromFile(file);
    } catch (err) {
      throw new Sam3Error(ErrorCode.Bundle, `cannot read tokenizer ${file}: ${(err as Error).message}`, undefined, { cause: err });
    }
    // Enforced here too, so a tokenizer.json without these settings still gives model-shaped input.
    tok.setTruncation(length);
    const padToken = tok.idToToken(padId);
    if (padToken === null) throw new Sam3Error(ErrorCode.Bundle, `tokenizer ${file} has no token with the pad id ${padId}`);
    tok.setPadding({ maxLength: length, padId, padToken });
    return new PromptTokenizer(tok, length);
  }

  async encode(texts: readonly string[]): Promise<TokenBatch> {
    const n = texts.length;
    const ids = new Int32Array(n * this.length);
    const mask = new Uint8Array(n * this.length);
    const encodings = await this.tokenizer.encodeBatch([...texts]);
    encodings.forEach((enc, i) => {
      const tokenIds = enc.getIds();
      const attention = enc.getAttentionMask();
      if (tokenIds.length !== this.length) {
        throw new Sam3Error(ErrorCode.Bundle, `tokenizer produced ${tokenIds.length} tokens for a prompt, expected ${this.length}`);
      }
      ids.set(tokenIds, i * this.length);
      mask.set(attention, i * this.length);
    });
    return { ids, mask, count: n, length: this.length };
  }
}
