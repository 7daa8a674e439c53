"""An independent ETSI TS 102 204 client: zeep, with the service generated from the public
Kiuru WSDL (SOAP 1.2, RPC/literal), pushing one signature request and querying its
status until it ends. Used by the gateway's tests against each simulated MSSP.

    python3 etsi_zeep_client.py WSDL ENDPOINT MSISDN MESSAGING_MODE MSS_FORMAT DATA_B64

Prints one JSON line: {"push_status", "mssp_trans_id", "final_status", "signature_b64"}.
"""
import base64
import json
import sys
import time

import zeep
from zeep import Settings

NS = "{http://uri.etsi.org/TS102204/etsi204-kiuru.wsdl}"


def main():
    wsdl, endpoint, msisdn, mode, mss_format, data_b64 = sys.argv[1:7]
    # xenc-schema.xsd in the WSDL's imports declares DTD entities.
    client = zeep.Client(wsdl, settings=Settings(strict=False, forbid_entities=False, forbid_dtd=False))
    signing = client.create_service(NS + "MSS_SignatureBinding", endpoint)
    status = client.create_service(NS + "MSS_StatusQueryBinding", endpoint)
    ap = dict(AP_ID="http://dichvucong.gov.vn/ap", AP_PWD="sim-ap-pass", AP_TransID="ZEEP-1",
              Instant="2026-12-02T00:00:00Z")
    if mode == "asynchServerServer":
        # Results come by callback too; this client reads them by status query.
        ap["AP_URL"] = "http://127.0.0.1:9/not-listening"
    pushed = signing.MSS_Signature(MSS_SignatureReq=dict(
        MajorVersion=1, MinorVersion=1, MessagingMode=mode, TimeOut="120",
        AP_Info=ap, MSSP_Info=dict(MSSP_ID=dict(URI="http://mssp.example")),
        MobileUser=dict(MSISDN=msisdn),
        DataToBeSigned=dict(_value_1=data_b64, MimeType="application/octet-stream", Encoding="base64"),
        SignatureProfile=dict(mssURI="http://uri.etsi.org/TS102204/v1.1.2#PKCS7"),
        MSS_Format=dict(mssURI=mss_format)))
    out = {"push_status": pushed.Status.StatusCode.Value, "mssp_trans_id": pushed.MSSP_TransID,
           "final_status": None, "signature_b64": None}
    for attempt in range(60):
        answer = status.MSS_StatusQuery(MSS_StatusReq=dict(
            MajorVersion=1, MinorVersion=1, AP_Info=dict(ap, AP_TransID="ZEEP-%d" % (attempt + 2)),
            MSSP_Info=dict(MSSP_ID=dict(URI="http://mssp.example")),
            MSSP_TransID=pushed.MSSP_TransID))
        code = answer.Status.StatusCode.Value
        if code != 504:  # OUTSTANDING_TRANSACTION
            out["final_status"] = code
            sig = answer.MSS_Signature
            if sig is not None and sig.Base64Signature is not None:
                out["signature_b64"] = base64.b64encode(sig.Base64Signature).decode()
            break
        time.sleep(0.25)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
