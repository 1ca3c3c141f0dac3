/**
 * Typed events: the {@linkcode Receiver} and the {@linkcode Client} are
 * `EventTarget`s whose events are `CustomEvent`s with a typed `detail`.
 *
 * @example Listen for a typed event
 * ```ts
 * import { TypedEventTarget } from "@x/mllp/events";
 * import { assertEquals } from "@std/assert";
 *
 * interface Events {
 *   ping: CustomEvent<{ n: number }>;
 * }
 * const target = new TypedEventTarget<Events>();
 * let seen = 0;
 * target.addEventListener("ping", (event) => seen = event.detail.n);
 * target.dispatchEvent(new CustomEvent("ping", { detail: { n: 7 } }));
 * assertEquals(seen, 7);
 * ```
 *
 * @module
 */

/**
 * An `EventTarget` whose `addEventListener` and `removeEventListener` know
 * the type of each event by its name.
 *
 * @typeParam M A map from event names to event types.
 *
 * @example Give a class typed events
 * ```ts
 * import { TypedEventTarget } from "@x/mllp/events";
 * import { assertEquals } from "@std/assert";
 *
 * interface CounterEvents {
 *   tick: CustomEvent<{ count: number }>;
 * }
 * class Counter extends TypedEventTarget<CounterEvents> {
 *   #count = 0;
 *   tick() {
 *     this.dispatchEvent(
 *       new CustomEvent("tick", { detail: { count: ++this.#count } }),
 *     );
 *   }
 * }
 * const counter = new Counter();
 * const seen: number[] = [];
 * counter.addEventListener("tick", (event) => seen.push(event.detail.count));
 * counter.tick();
 * counter.tick();
 * assertEquals(seen, [1, 2]);
 * ```
 */
export class TypedEventTarget<M extends { [K in keyof M]: Event }>
  extends EventTarget {
  /** The event names a listener was ever added for. */
  #listened = new Set<string>();

  /**
   * Whether a listener was ever added for `type` (and may still be
   * there): an emitter can skip building events nobody listens to.
   *
   * @param type The event name.
   * @returns `false` when no listener was ever added for it.
   *
   * @example Skip an event nobody listens to
   * ```ts
   * import { TypedEventTarget } from "@x/mllp/events";
   * import { assertEquals } from "@std/assert";
   *
   * const target = new TypedEventTarget<{ tick: CustomEvent<number> }>();
   * assertEquals(target.listenedTo("tick"), false);
   * target.addEventListener("tick", () => {});
   * assertEquals(target.listenedTo("tick"), true);
   * ```
   */
  listenedTo(type: keyof M & string): boolean {
    return this.#listened.has(type);
  }

  /**
   * Listens for an event of this target (see its event map).
   *
   * @typeParam K The event name.
   * @param type The event name.
   * @param listener Called with the event.
   * @param options `once`, `signal` and the other listener options.
   */
  override addEventListener<K extends keyof M & string>(
    type: K,
    listener: (event: M[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  /**
   * Listens for an event by name.
   *
   * @param type The event name.
   * @param listener Called with the event.
   * @param options `once`, `signal` and the other listener options.
   */
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    listener:
      | EventListenerOrEventListenerObject
      | ((event: never) => void)
      | null,
    options?: boolean | AddEventListenerOptions,
  ): void {
    if (listener) this.#listened.add(type);
    super.addEventListener(
      type,
      listener as EventListenerOrEventListenerObject | null,
      options,
    );
  }

  /**
   * Removes a listener added with `addEventListener`.
   *
   * @typeParam K The event name.
   * @param type The event name.
   * @param listener The listener to remove.
   * @param options The `capture` flag it was added with.
   */
  override removeEventListener<K extends keyof M & string>(
    type: K,
    listener: (event: M[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  /**
   * Removes a listener by event name.
   *
   * @param type The event name.
   * @param listener The listener to remove.
   * @param options The `capture` flag it was added with.
   */
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
  override removeEventListener(
    type: string,
    listener:
      | EventListenerOrEventListenerObject
      | ((event: never) => void)
      | null,
    options?: boolean | EventListenerOptions,
  ): void {
    super.removeEventListener(
      type,
      listener as EventListenerOrEventListenerObject | null,
      options,
    );
  }
}
