// The grpc_web declaration: no settings (`grpc_web: {}`); what it does is fixed by the gRPC-Web
// protocol (grpc/grpc doc/PROTOCOL-WEB.md).

import { z } from 'zod'

export const grpcWeb = z.strictObject({
  type: z.literal('grpc_web').optional(),
})

export type GrpcWebConfig = z.output<typeof grpcWeb>
