"""A marketing tool in another language reading a rule segment: generates Python stubs from Protos/ as
partner_client.py does and reads the segment with ListSegmentMembers (a member per message) and
ListSegmentMemberPages (here a member per page, so the order of pages shows). Prints one JSON object.

usage: segment_pages.py PROTOS_DIR ANALYTICS_ADDR SEGMENT_ID [TLS_DIR]
"""
import json
import os
import sys

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from partner_client import channel, generate  # noqa: E402


def main():
    protos_dir, analytics_addr, segment = sys.argv[1:4]
    tls_dir = sys.argv[4] if len(sys.argv) > 4 else None
    generate(protos_dir)
    from rapport.analytics.v1 import analytics_pb2, analytics_pb2_grpc

    analytics = analytics_pb2_grpc.AnalyticsServiceStub(channel(analytics_addr, tls_dir, client_certificate=True))
    members = [m.customer_id for m in analytics.ListSegmentMembers(
        analytics_pb2.ListSegmentMembersRequest(segment_id=segment), timeout=10)]
    pages = [[m.customer_id for m in page.members] for page in analytics.ListSegmentMemberPages(
        analytics_pb2.ListSegmentMemberPagesRequest(segment_id=segment, page_size=1), timeout=10)]
    whole = [[m.customer_id for m in page.members] for page in analytics.ListSegmentMemberPages(
        analytics_pb2.ListSegmentMemberPagesRequest(segment_id=segment), timeout=10)]
    try:
        list(analytics.ListSegmentMemberPages(
            analytics_pb2.ListSegmentMemberPagesRequest(segment_id=segment, page_size=10001), timeout=10))
        bad = {"code": "OK"}
    except grpc.RpcError as error:
        bad = {"code": error.code().name, "details": error.details()}
    print(json.dumps({"members": members, "pages": pages, "whole": whole, "bad_page_size": bad}))


if __name__ == "__main__":
    main()
