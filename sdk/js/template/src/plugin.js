// @ts-check
// PLUGIN_NAME: a Weir plugin. It adds `x-PLUGIN_NAME: on` to every request
// and, when the route's config sets `greeting`, answers `/hello` itself.

import { log } from 'weir:plugin/log@0.1.0';

/** @typedef {import('weir:plugin/types@0.1.0').Request} Request */
/** @typedef {import('weir:plugin/types@0.1.0').Response} Response */
/** @typedef {import('weir:plugin/types@0.1.0').RequestAction} RequestAction */
/** @typedef {import('weir:plugin/types@0.1.0').Interests} Interests */
/** @typedef {import('weir:plugin/filter@0.1.0').Handler} PluginHandler */

/** @implements {PluginHandler} */
class Handler {
  /** @param {string | undefined} greeting */
  constructor(greeting) {
    this.greeting = greeting;
  }

  /**
   * Called once per route with the route's config as JSON. Reject a bad
   * config by throwing a string: the gateway refuses the config with it.
   * @param {string} json
   * @returns {Handler}
   */
  static configure(json) {
    let config;
    try {
      config = JSON.parse(json);
    } catch {
      throw 'config is not JSON';
    }
    for (const field of Object.keys(config)) {
      if (field !== 'greeting') throw `unknown field \`${field}\`, expected \`greeting\``;
    }
    if (config.greeting !== undefined && typeof config.greeting !== 'string') {
      throw 'invalid type for field `greeting`: expected a string';
    }
    return new Handler(config.greeting);
  }

  /** @returns {Interests} */
  interests() {
    return { onRequest: true, requestBody: false, onResponse: false, responseBody: false, responseChunks: false };
  }

  /**
   * @param {Request} request
   * @returns {RequestAction}
   */
  onRequest(request) {
    if (this.greeting !== undefined && request.path() === '/hello') {
      return {
        tag: 'respond',
        val: {
          status: 200,
          headers: [['content-type', 'text/plain; charset=utf-8']],
          body: new TextEncoder().encode(this.greeting),
        },
      };
    }
    try {
      request.setHeader('x-PLUGIN_NAME', 'on');
    } catch (e) {
      log('warn', `x-PLUGIN_NAME not set: ${/** @type {any} */ (e).payload?.val ?? e}`);
    }
    return { tag: 'continue' };
  }

  /** @param {Response} response */
  onResponse(response) {}

  /**
   * @param {Uint8Array} chunk
   * @param {boolean} end
   * @returns {Uint8Array}
   */
  onResponseChunk(chunk, end) {
    return chunk;
  }
}

/** @type {import('weir:plugin/filter@0.1.0').Filter} */
export const filter = { Handler };
