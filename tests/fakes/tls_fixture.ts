/**
 * A throw-away certificate authority and a certificate it signed for `localhost` and 127.0.0.1
 * (valid until 2126), for tests that speak TLS on loopback. TEST ONLY: these keys protect nothing.
 *
 * @module
 */

/** The test CA's certificate (trust it with `caCerts`). */
export const TEST_CA_PEM = `-----BEGIN CERTIFICATE-----
MIIBmzCCAUGgAwIBAgIUcZdQ7e+FSFeHugJ70hzmh00lRJgwCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPR2F0ZXdheSBUZXN0IENBMCAXDTI2MTIwNjExMTcxOVoYDzIx
MjYxMTEyMTExNzE5WjAaMRgwFgYDVQQDDA9HYXRld2F5IFRlc3QgQ0EwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAASWjahKfoww25pbJK2StIe3XmB1m90lArxYc3XQ
4qfICThF6cmGv0gCVQoCtl7ucHKEYxIzb/ZleGUSOpxlsgPWo2MwYTAdBgNVHQ4E
FgQUNMojfak3jvy2M/ddQnnXt7JzH9owHwYDVR0jBBgwFoAUNMojfak3jvy2M/dd
QnnXt7JzH9owDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAgQwCgYIKoZI
zj0EAwIDSAAwRQIgPn5t9z2+EbiEFpVjOH44VTToT9noG73A21EpoIMTONMCIQCk
KxpQNzJLeQC23/cGYj7p+kdY3jYpWY4TV9GEV5tvBQ==
-----END CERTIFICATE-----
`;

/** The server certificate for `localhost` / 127.0.0.1, signed by the test CA. */
export const TEST_CERT_PEM = `-----BEGIN CERTIFICATE-----
MIIBsDCCAVagAwIBAgIUMik4+92wSC45mI+KFogLIlJOt2UwCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPR2F0ZXdheSBUZXN0IENBMCAXDTI2MTIwNjExMTcxOVoYDzIx
MjYxMTEyMTExNzE5WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIB
BggqhkjOPQMBBwNCAATcJtQlCTxnWYy+BaXie9P0ohHz4MbFsLJGpXfQe+jseZUU
r7GZap02PvmYMBOp1Xb8I0Jo5rjQwAWAiV61SJhlo34wfDAaBgNVHREEEzARggls
b2NhbGhvc3SHBH8AAAEwCQYDVR0TBAIwADATBgNVHSUEDDAKBggrBgEFBQcDATAd
BgNVHQ4EFgQUfwISqWt4wUzsh3VgFEiNigK6CXwwHwYDVR0jBBgwFoAUNMojfak3
jvy2M/ddQnnXt7JzH9owCgYIKoZIzj0EAwIDSAAwRQIgQD17xr4tsDE+F9SOPf+F
P1h1SW0rXHT3M5qR/cVdZSsCIQCCJ+n2DzRLdmxd5/Str5JQSnCRLD/D+e7lzWNi
ntZ3HQ==
-----END CERTIFICATE-----
`;

/** The server certificate's private key. */
export const TEST_KEY_PEM = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQghwAkqfwVA0fcacUo
oHFZcdkJdp7b3rZPgw4qLdJulrOhRANCAATcJtQlCTxnWYy+BaXie9P0ohHz4MbF
sLJGpXfQe+jseZUUr7GZap02PvmYMBOp1Xb8I0Jo5rjQwAWAiV61SJhl
-----END PRIVATE KEY-----
`;
