// Types of the Morel SDK for Node.js (index.js).

/** A JSON value: what a function takes as arguments and returns as a result. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Headers or query parameters: an object, or [name, value] pairs (a name may repeat). */
export type Pairs = Record<string, string> | Iterable<readonly [string, string]>;

/** The options of an {@link Endpoint}, written as literals (Morel reads them without running the app). */
export interface EndpointOptions {
  /** `[min, max]` worker processes, or one number for both; `min` may be 0. Default `[1, 1]`. */
  workers?: number | [number, number];
  /** Calls one worker runs at a time. Default 1. */
  concurrency?: number;
  /** The per-call deadline, in seconds. Default 30. */
  timeout_s?: number;
  /** How long an idle worker is kept above `min`, in seconds. Default 300. */
  idle_timeout_s?: number;
  /** The memory limit of each worker, in MiB. */
  memory_mb?: number;
  /** The CPU limit of each worker, in cores. */
  cpu?: number;
  /** Environment variables of the workers. */
  env?: Record<string, string>;
  /** Whether the endpoint's routes are reachable without credentials. Default true. */
  public?: boolean;
}

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH';

type AnyFunction = (...args: any[]) => unknown;

/** A named group of functions sharing one resource configuration. */
export declare class Endpoint {
  constructor(name: string, options?: EndpointOptions);
  readonly name: string;
  readonly workers: [number, number];
  readonly concurrency: number;
  readonly timeout_s: number;
  readonly idle_timeout_s: number;
  readonly memory_mb: number | null;
  readonly cpu: number | null;
  readonly env: Record<string, string>;
  readonly public: boolean;
  /** Runs `fn` on this endpoint; returns `fn`. */
  function<F extends AnyFunction>(fn: F): F;
  /** Exposes `fn` as `method path` over HTTP; `{name}` segments of the path are named arguments. */
  route<F extends AnyFunction>(method: HttpMethod | Lowercase<HttpMethod>, path: string, fn: F): F;
  get<F extends AnyFunction>(path: string, fn: F): F;
  post<F extends AnyFunction>(path: string, fn: F): F;
  put<F extends AnyFunction>(path: string, fn: F): F;
  delete<F extends AnyFunction>(path: string, fn: F): F;
  patch<F extends AnyFunction>(path: string, fn: F): F;
}

/** Marks `fn` as a Morel function on the app's default resource; returns `fn`. */
declare function markFunction<F extends AnyFunction>(fn: F): F;
export { markFunction as function };

export interface RequestInit {
  method?: string;
  path?: string;
  headers?: Pairs;
  query?: Pairs;
}

/**
 * The HTTP request of a call, given to the parameter named `request` of a
 * function declared with the SDK.
 */
export declare class Request {
  constructor(init?: RequestInit);
  /** `GET`, `POST`... */
  readonly method: string;
  /** The path as the client sent it (percent-encoded, with the app's prefix, without the query). */
  readonly path: string;
  /** Lowercase names to values; a repeated header's values joined by `, `. */
  readonly headers: Record<string, string>;
  /** Decoded query parameters; a repeated one is an array. */
  readonly query: Record<string, string | string[]>;
  /** Every header as a [lowercase name, value] pair, in order. */
  readonly headerList: [string, string][];
  /** Every query parameter as a [name, value] pair, in order. */
  readonly queryList: [string, string][];
  /** One header's value (any case of its name). */
  header(name: string): string | undefined;
  /** From an Invoke frame's `request` (used by Morel's runner). */
  static fromWire(wire: {
    method?: string;
    path?: string;
    headers?: [string, string][];
    query?: [string, string][];
  }): Request;
}

export interface ResponseInit {
  /** 200 to 599. Default 200. */
  status?: number;
  /** Header values must be strings. Content-Length, Date and connection headers are Morel's. */
  headers?: Pairs;
  /** Sets `content-type`; a string body with a content type that is not JSON is sent as it is. */
  contentType?: string;
}

/** An answer with its own status and headers, returned by a function. */
export declare class Response<B = unknown> {
  constructor(body?: B, init?: ResponseInit);
  readonly body: B;
  readonly status: number;
  readonly headers: [string, string][];
}

/** A function called on another resource threw; `name` and `type` are the remote error's type. */
export declare class RemoteError extends Error {
  constructor(message: string, type?: string, status?: number);
  readonly type: string;
  /** The HTTP status of the answer. */
  readonly status: number;
}

/**
 * Calls another function of the same app by name; `args` is an array
 * (positional) or an object (named). Runs in this worker when the function is
 * loaded here, otherwise through Morel's gateway.
 */
export declare function call<T = Json>(name: string, args?: unknown[] | Record<string, unknown>): Promise<T>;

/** This package's version. */
export declare const version: string;
