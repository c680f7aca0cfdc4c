/** OpenAI-shaped errors: `{"error": {"message", "type", "param", "code"}}` with an HTTP status. */

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string = 'invalid_request_error',
    readonly code: string | null = null,
    readonly param: string | null = null,
  ) {
    super(message);
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const badParam = (param: string, message: string) => new ApiError(400, message, 'invalid_request_error', 'invalid_value', param);
