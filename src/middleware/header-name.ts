// Header names in middleware settings: an RFC 9110 token, checked where the setting is declared.

import { z } from 'zod'

export const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
export const headerName = z.string().regex(TOKEN, { message: 'is not a valid header name' })
