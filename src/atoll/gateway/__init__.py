"""The S3 gateway: Atoll's S3 API over the object layer (issue 5, shared/DESIGN.md §5).

Pure cores decide what a request means and whether it is authentic (`sigv4` for AWS
Signature Version 4, `payload` for aws-chunked bodies and the digests that cover a
body, `checksums` for those digests, `errors` for the S3 error codes); the HTTP server
shell around them reads sockets, streams bodies and talks to the KV and storage
services.
"""
