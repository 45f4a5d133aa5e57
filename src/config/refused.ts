// Why a config change (a reload, a control-API change) was not made, in the config's own terms.
// The control API turns the reason into an HTTP status (control/api.ts); nothing here knows HTTP.

export type RefusalReason = 'invalid' | 'not_found' | 'conflict' | 'unavailable'

export class ChangeRefused extends Error {
  constructor(
    readonly reason: RefusalReason,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message)
    this.name = 'ChangeRefused'
  }
}
