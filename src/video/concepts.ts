/**
 * The text concepts of a video session (SAM 3 concept tracking, native/core/concept.cc): each
 * concept is a text prompt whose every instance is detected on every frame, associated with the
 * objects already tracked, and tracked from the frame it is found on. This class owns the
 * concepts' text embeddings and turns the native frames into the session's FrameResults.
 */
import type { ConceptConfig } from '../bundle.js';
import { ErrorCode, Sam3Error, callNative, invalid } from '../errors.js';
import type { ImageFeatures } from '../features.js';
import type { NativeConceptFrame, NativeConceptTrack, NativeTextEmbedding, NativeTracker, NativeVideoHandle } from '../native.js';
import { type Box, promptText } from '../prompts.js';
import type { RgbFrame } from './source.js';

/** What concept tracking needs of the image model (Sam3Model satisfies it). */
export interface ConceptDetector {
  readonly conceptConfig: ConceptConfig | undefined;
  encodeImages(images: readonly { rgb: Uint8Array; width: number; height: number }[], options: { keepBackbone: boolean }): Promise<ImageFeatures[]>;
  encodeConceptText(text: string): Promise<NativeTextEmbedding>;
}

export interface ConceptObject {
  id: number;
  mask: { size: [number, number]; counts: string };
  box: Box;
  /** The detection score the object was found with. */
  score: number;
  /** The tracker's score for the object on this frame (0 on the frame it was found). */
  trackerScore: number;
  /** The text of the concept that found the object (null: an object of a box/point prompt). */
  concept: string | null;
}

export interface ConceptSummary {
  id: number;
  text: string;
  /** Objects of the concept tracked now. */
  objects: number[];
}

interface Concept {
  id: number;
  text: string;
  embedding: NativeTextEmbedding;
}

export class SessionConcepts {
  private readonly byText = new Map<string, Concept>();
  private readonly byId = new Map<number, Concept>();
  /** Object id -> concept id, for the live objects concepts found. */
  private readonly objectConcept = new Map<number, number>();
  /** The native state's object ids after the last step (bounded by live objects on a long video). */
  stateIds = 0;

  constructor(
    private readonly detector: ConceptDetector,
    private readonly tracker: NativeTracker,
    private readonly handle: NativeVideoHandle,
  ) {}

  get size(): number {
    return this.byId.size;
  }

  /** The concept of a text, added when new (the same text again is the same concept). */
  async add(text: string, threshold: number | undefined): Promise<Concept> {
    const known = this.byText.get(text);
    if (known) return known;
    const config = this.detector.conceptConfig;
    if (!config) {
      throw new Sam3Error(ErrorCode.NoVideoModel, 'the model bundle records no concept-tracking settings: export it again with this version (bundle format 7)');
    }
    const embedding = await this.detector.encodeConceptText(text);
    try {
      const id = await callNative(() => this.tracker.conceptAdd(this.handle, embedding, config, threshold));
      const concept = { id, text, embedding };
      this.byText.set(text, concept);
      this.byId.set(id, concept);
      return concept;
    } catch (err) {
      embedding.dispose();
      throw err;
    }
  }

  /** Stops tracking a concept; the ids of the objects removed with it. */
  async remove(id: number): Promise<number[]> {
    const concept = this.byId.get(id);
    if (!concept) {
      const known = [...this.byId.values()].map((c) => `${c.id} ('${c.text}')`).join(', ') || 'none';
      throw new Sam3Error(ErrorCode.UnknownConcept, `concept ${id} is not tracked in this session (concepts: ${known})`, { concept_id: id });
    }
    const removed = await callNative(() => this.tracker.conceptRemove(this.handle, id));
    this.byId.delete(id);
    this.byText.delete(concept.text);
    concept.embedding.dispose();
    for (const obj of removed) this.objectConcept.delete(obj);
    return removed;
  }

  /** Detection + tracking of every concept on one frame; the frames ready to emit. */
  async track(frame: number, reverse: boolean, rgb: RgbFrame, options: { mode: 'forward' | 'propagate'; first: boolean; last: boolean }): Promise<NativeConceptTrack> {
    const [features] = await this.detector.encodeImages([{ rgb: rgb.rgb, width: rgb.width, height: rgb.height }], { keepBackbone: true });
    try {
      const res = await callNative(() => this.tracker.conceptTrack(this.handle, frame, reverse, features!.native, options));
      for (const f of res.frames) f.objIds.forEach((id, i) => (f.concepts[i]! >= 0 ? this.objectConcept.set(id, f.concepts[i]!) : undefined));
      // Objects hotstart removed are in no later frame (buffered frames hide them): forget them.
      const live = new Set(res.tracked);
      for (const id of this.objectConcept.keys()) if (!live.has(id)) this.objectConcept.delete(id);
      this.stateIds = res.stateIds;
      return res;
    } finally {
      features!.dispose();
    }
  }

  /** The session's objects of one native frame. */
  objects(f: NativeConceptFrame): ConceptObject[] {
    const b = f.boxes;
    return f.objIds.map((id, i) => ({
      id,
      mask: { size: [f.height, f.width], counts: f.masks[i]! },
      box: [b[4 * i]!, b[4 * i + 1]!, b[4 * i + 2]!, b[4 * i + 3]!],
      score: f.scores[i]!,
      trackerScore: f.trackerScores[i]!,
      concept: this.textOf(f.concepts[i]!),
    }));
  }

  textOf(conceptId: number): string | null {
    return this.byId.get(conceptId)?.text ?? null;
  }

  /** The concept text of a tracked object (null: not found by a concept). */
  conceptOf(objId: number): string | null {
    const id = this.objectConcept.get(objId);
    return id === undefined ? null : this.textOf(id);
  }

  list(tracked: readonly number[]): ConceptSummary[] {
    return [...this.byId.values()].map((c) => ({ id: c.id, text: c.text, objects: tracked.filter((o) => this.objectConcept.get(o) === c.id) }));
  }

  /** Forgets every concept (after the native state was reset). */
  clear(): void {
    for (const c of this.byId.values()) c.embedding.dispose();
    this.byId.clear();
    this.byText.clear();
    this.objectConcept.clear();
  }
}

/** A text prompt's text: the prompt rule (prompts.ts promptText: trimmed, within MAX_PROMPT_CHARS), and not empty. */
export function conceptText(text: unknown): string {
  const t = promptText(text, 'text');
  if (t === undefined) throw invalid('text must be a non-empty string');
  return t;
}

/** The logit of a probability (clamped away from 0 and 1). */
export function logit(p: number): number {
  const q = Math.min(Math.max(p, 1e-6), 1 - 1e-6);
  return Math.log(q / (1 - q));
}

/** A concept object as the session's TrackedObject: its logit is the tracker's score's. */
export function conceptTracked(o: ConceptObject): { id: number; mask: ConceptObject['mask']; box: Box; score: number; logit: number; concept: string | null } {
  return { id: o.id, mask: o.mask, box: o.box, score: o.score, logit: logit(o.trackerScore), concept: o.concept };
}
