// @ts-check
// Request signatures: a client signs `METHOD \n PATH \n BODY` with
// HMAC-SHA256 under a shared secret and sends the lowercase hex digest in a
// header (`x-signature` unless configured). A request with a good signature
// goes on with the `consumer` property and the `x-consumer` header set; any
// other gets a 401.
//
// Config: { "secret": "<secret name>", "consumer": "<consumer name>",
//           "header": "<header name, default x-signature>" }

import { log } from 'weir:plugin/log@0.1.0';
import { get as getSecret } from 'weir:plugin/secrets@0.1.0';

import { constantTimeEqual, hex, hmacSha256 } from './hmac.js';

/** @typedef {import('weir:plugin/types@0.1.0').Request} Request */
/** @typedef {import('weir:plugin/types@0.1.0').RequestAction} RequestAction */
/** @typedef {import('weir:plugin/types@0.1.0').Interests} Interests */
/** @typedef {import('weir:plugin/filter@0.1.0').Handler} PluginHandler */

const FIELDS = ['secret', 'consumer', 'header'];
const encoder = new TextEncoder();

/**
 * A 401 or 500 answer with a JSON error body.
 * @param {number} status
 * @param {string} error
 * @returns {RequestAction}
 */
function refuse(status, error) {
  return {
    tag: 'respond',
    val: {
      status,
      headers: [['content-type', 'application/json']],
      body: encoder.encode(JSON.stringify({ error })),
    },
  };
}

/**
 * A string field of the config; `undefined` when absent.
 * @param {Record<string, unknown>} config
 * @param {string} field
 * @returns {string | undefined}
 */
function stringField(config, field) {
  const value = config[field];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw `invalid type for field \`${field}\`: expected a string`;
  return value;
}

/** @implements {PluginHandler} */
class Handler {
  /**
   * @param {string} secret
   * @param {string} consumer
   * @param {string} header
   */
  constructor(secret, consumer, header) {
    this.secret = secret;
    this.consumer = consumer;
    this.header = header;
  }

  /**
   * Errors are thrown as strings: componentize-js turns a thrown string
   * into the `err` of `result<handler, string>` (a thrown Error would trap).
   * @param {string} json
   * @returns {Handler}
   */
  static configure(json) {
    let config;
    try {
      config = JSON.parse(json);
    } catch (e) {
      throw `config is not JSON: ${e instanceof Error ? e.message : e}`;
    }
    if (config === null || typeof config !== 'object' || Array.isArray(config)) {
      throw 'config must be a table with `secret` and `consumer`';
    }
    for (const field of Object.keys(config)) {
      if (!FIELDS.includes(field)) {
        throw `unknown field \`${field}\`, expected one of ${FIELDS.map((f) => `\`${f}\``).join(', ')}`;
      }
    }
    const secret = stringField(config, 'secret');
    if (secret === undefined) throw 'missing field `secret`';
    const consumer = stringField(config, 'consumer');
    if (consumer === undefined) throw 'missing field `consumer`';
    const header = stringField(config, 'header') ?? 'x-signature';
    return new Handler(secret, consumer, header);
  }

  /** @returns {Interests} */
  interests() {
    return {
      onRequest: true,
      requestBody: true,
      onResponse: false,
      responseBody: false,
      responseChunks: false,
    };
  }

  /**
   * @param {Request} request
   * @returns {RequestAction}
   */
  onRequest(request) {
    const given = request.header(this.header);
    if (given === undefined) return refuse(401, 'missing signature');

    let key;
    try {
      key = getSecret(this.secret);
    } catch (e) {
      // Host calls that return `result` throw an error whose `payload` is
      // the contract's `error` variant.
      const payload = /** @type {{ payload?: { tag: string, val: string } }} */ (e).payload;
      log('error', `secret ${this.secret}: ${payload ? `${payload.tag}: ${payload.val}` : e}`);
      return refuse(500, 'signing key unavailable');
    }

    const head = encoder.encode(`${request.method()}\n${request.path()}\n`);
    const body = request.body() ?? new Uint8Array(0);
    const message = new Uint8Array(head.length + body.length);
    message.set(head);
    message.set(body, head.length);
    const expected = hex(hmacSha256(encoder.encode(key), message));
    if (!constantTimeEqual(given.trim().toLowerCase(), expected)) return refuse(401, 'invalid signature');

    request.setProperty('consumer', this.consumer);
    try {
      request.setHeader('x-consumer', this.consumer);
    } catch (e) {
      log('warn', `x-consumer not set: ${/** @type {any} */ (e).payload?.val ?? e}`);
    }
    return { tag: 'continue' };
  }

  /** Not called: `interests` leaves the response alone. */
  onResponse() {}

  /**
   * Not called either.
   * @param {Uint8Array} chunk
   * @returns {Uint8Array}
   */
  onResponseChunk(chunk) {
    return chunk;
  }
}

/** @type {import('weir:plugin/filter@0.1.0').Filter} */
export const filter = { Handler };
