"""S3 errors: one table from S3 error code to HTTP status and default message, and one
from dscluster's own error classes to S3 codes (like garage's api/s3/error.rs).

Handlers raise ``S3Error("NoSuchKey", key=...)``; the app turns it into the XML error
body (or a bare status for HEAD, whose responses carry no body) with the request id.
"""

from __future__ import annotations

from .. import errors as ds_errors

# code -> (HTTP status, default message); the messages are AWS's where AWS has one
S3_ERRORS: dict[str, tuple[int, str]] = {
    "AccessDenied": (403, "Access Denied"),
    "AuthorizationHeaderMalformed": (400, "The authorization header is malformed."),
    "AuthorizationQueryParametersError": (400, "The query-string authentication is malformed."),
    "BadDigest": (400, "The Content-MD5 or checksum value that you specified did not match "
                       "what the server received."),
    "BucketAlreadyExists": (409, "The requested bucket name is not available."),
    "BucketAlreadyOwnedByYou": (409, "Your previous request to create the named bucket "
                                     "succeeded and you already own it."),
    "BucketNotEmpty": (409, "The bucket you tried to delete is not empty."),
    "EntityTooLarge": (400, "Your proposed upload exceeds the maximum allowed object size."),
    "EntityTooSmall": (400, "Your proposed upload is smaller than the minimum allowed "
                            "object size."),
    "IncompleteBody": (400, "You did not provide the number of bytes specified by the "
                            "Content-Length HTTP header."),
    "InternalError": (500, "We encountered an internal error. Please try again."),
    "InvalidAccessKeyId": (403, "The AWS access key Id you provided does not exist in our "
                                "records."),
    "InvalidArgument": (400, "Invalid Argument"),
    "InvalidBucketName": (400, "The specified bucket is not valid."),
    "InvalidDigest": (400, "The Content-MD5 or checksum value you specified is not valid."),
    "InvalidPart": (400, "One or more of the specified parts could not be found. The part "
                         "may not have been uploaded, or the specified entity tag may not "
                         "match the part's entity tag."),
    "InvalidPartOrder": (400, "The list of parts was not in ascending order. Parts must be "
                              "ordered by part number."),
    "InvalidRange": (416, "The requested range is not satisfiable"),
    "InvalidRequest": (400, "Invalid Request"),
    "KeyTooLongError": (400, "Your key is too long"),
    "MalformedACLError": (400, "The XML you provided was not well-formed or did not "
                               "validate against our published schema."),
    "MalformedXML": (400, "The XML you provided was not well-formed or did not validate "
                          "against our published schema."),
    "MetadataTooLarge": (400, "Your metadata headers exceed the maximum allowed metadata "
                              "size."),
    "MethodNotAllowed": (405, "The specified method is not allowed against this resource."),
    "MissingContentLength": (411, "You must provide the Content-Length HTTP header."),
    "MissingSecurityHeader": (400, "Your request is missing a required header."),
    "NoSuchBucket": (404, "The specified bucket does not exist"),
    "NoSuchKey": (404, "The specified key does not exist."),
    "NoSuchUpload": (404, "The specified multipart upload does not exist. The upload ID may "
                          "be invalid, or the upload may have been aborted or completed."),
    "NotImplemented": (501, "A header or query you provided implies functionality that is "
                            "not implemented."),
    "NotModified": (304, "Not Modified"),
    "PreconditionFailed": (412, "At least one of the preconditions you specified did not "
                                "hold."),
    "RequestTimeTooSkewed": (403, "The difference between the request time and the current "
                                  "time is too large."),
    "ServiceUnavailable": (503, "Please reduce your request rate."),
    "SignatureDoesNotMatch": (403, "The request signature we calculated does not match the "
                                   "signature you provided. Check your key and signing "
                                   "method."),
    "UnexpectedContent": (400, "This request does not support content."),
    "XAmzContentSHA256Mismatch": (400, "The provided 'x-amz-content-sha256' header does not "
                                       "match what was computed."),
}

# dscluster error class -> S3 code; the most specific class in an exception's MRO wins
DS_ERROR_CODES: dict[type[ds_errors.DSClusterError], str] = {
    ds_errors.NotFound: "NoSuchKey",
    ds_errors.TooLarge: "EntityTooLarge",
    ds_errors.InvalidKey: "KeyTooLongError",
    ds_errors.InvalidArgument: "InvalidArgument",
    ds_errors.Forbidden: "AccessDenied",
    ds_errors.Unauthorized: "AccessDenied",
    # a redirect that reaches the gateway means the map was still moving after retries
    ds_errors.Redirect: "ServiceUnavailable",
    ds_errors.Unavailable: "ServiceUnavailable",
    ds_errors.DSClusterError: "InternalError",
}


class S3Error(Exception):
    """An S3 error response. ``fields`` become extra elements of the XML body (BucketName,
    Key, UploadId, ...); ``headers`` are added to the response."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **fields: str,
    ) -> None:
        status, default = S3_ERRORS[code]
        super().__init__(f"{code}: {message or default}")
        self.code = code
        self.status = status
        self.message = message or default
        self.headers = headers or {}
        self.fields = fields


def s3_error_from(exc: ds_errors.DSClusterError) -> S3Error:
    """The S3 error for an error the datastore raised."""
    for cls in type(exc).__mro__:
        code = DS_ERROR_CODES.get(cls)  # type: ignore[arg-type]
        if code is not None:
            if code == "InternalError":
                return S3Error(code)  # internal details stay in the log
            return S3Error(code, exc.message)
    return S3Error("InternalError")
