"""The local stack's moto speed-up (``devtools.local_stack.moto_index``) answers exactly as moto does.

The same queries (both indexes and the table key; key conditions =, <=, >=, BETWEEN; filters;
limits and ExclusiveStartKey pages; both directions; projections) and BatchGetItem with a
projection are asked of one table with and without ``indexed_queries``, and again after
writes (put, update that moves an item out of and into the sparse index, delete): the
answers are identical.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any

import boto3

from devtools.local_stack.moto_index import fast_attribute_values, indexed_queries
from mx_webhooks.store import attention_value, list_shard, to_item
from tests.conftest import REGION, table_definition


def _questions(client: Any) -> list[Any]:
    answers: list[Any] = []

    def walk(**request: Any) -> None:
        start = None
        for _ in range(50):
            page = client.query(TableName="events", **request, **({"ExclusiveStartKey": start} if start else {}))
            answers.append((page["Items"], page.get("LastEvaluatedKey"), page["Count"], page["ScannedCount"]))
            start = page.get("LastEvaluatedKey")
            if not start:
                return

    for shard in ("00", "03", "17", "31"):
        for forward in (False, True):
            for limit in (1, 4, 50):
                walk(
                    IndexName="Recent",
                    KeyConditionExpression="listShard = :s",
                    ExpressionAttributeValues={":s": {"S": shard}},
                    ScanIndexForward=forward,
                    Limit=limit,
                )
        walk(
            IndexName="Recent",
            KeyConditionExpression="listShard = :s AND firstSeenAt BETWEEN :a AND :b",
            FilterExpression="eventType = :t",
            ExpressionAttributeValues={
                ":s": {"S": shard},
                ":a": {"S": "2026-09-14T10:00:05.000Z"},
                ":b": {"S": "2026-09-14T10:00:30.000Z"},
                ":t": {"S": "asset.updated"},
            },
            ScanIndexForward=False,
            Limit=3,
        )
        walk(
            IndexName="Attention",
            KeyConditionExpression="attention = :s AND firstSeenAt <= :b",
            FilterExpression="#st = :f",
            ExpressionAttributeNames={"#st": "status"},
            ExpressionAttributeValues={
                ":s": {"S": shard},
                ":b": {"S": "2026-09-14T10:00:20.000Z"},
                ":f": {"S": "FAILED"},
            },
            ScanIndexForward=False,
            Limit=2,
        )
        walk(
            IndexName="Attention",
            KeyConditionExpression="attention = :s AND firstSeenAt >= :a",
            ExpressionAttributeValues={":s": {"S": shard}, ":a": {"S": "2026-09-14T10:00:10.000Z"}},
            ProjectionExpression="eventId, firstSeenAt",
        )
    for event_id in ("evt_0000", "evt_0042", "evt_9999"):
        walk(
            KeyConditionExpression="eventId = :id",
            ExpressionAttributeValues={":id": {"S": event_id}},
            ConsistentRead=True,
        )
    keys = [{"eventId": {"S": f"evt_{n:04d}"}} for n in range(0, 300, 7)]
    batch = client.batch_get_item(
        RequestItems={
            "events": {
                "Keys": keys,
                "ProjectionExpression": "#a, #b, #c, payload",
                "ExpressionAttributeNames": {"#a": "eventId", "#b": "status", "#c": "handlers"},
            }
        }
    )
    answers.append(sorted(batch["Responses"]["events"], key=lambda i: i["eventId"]["S"]))
    return answers


def test_answers_are_identical_with_and_without_the_speed_up(aws):
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(TableName="events", **table_definition())
    rng = random.Random(7)
    for n in range(300):
        event_id = f"evt_{n:04d}"
        status = rng.choice(["COMPLETED", "COMPLETED", "FAILED", "QUEUED", "IGNORED"])
        entity = f"workorder:{rng.randint(1, 80)}"
        item: dict[str, Any] = {
            "eventId": event_id,
            "firstSeenAt": f"2026-09-14T10:00:{rng.randint(0, 40):02d}.000Z",  # ties
            "eventType": rng.choice(["workorder.updated", "asset.updated"]),
            "status": status,
            "entityKey": entity,
            "listShard": list_shard({"entityKey": entity, "eventId": event_id}),
            "payload": "x" * rng.randint(10, 400),
            "handlers": {"h": {"status": "SUCCEEDED", "attempts": 1}},
        }
        if (shard := attention_value(event_id, status)) is not None:
            item["attention"] = shard
        client.put_item(TableName="events", Item=to_item(item))

    def writes() -> None:
        client.put_item(
            TableName="events",
            Item=to_item(
                {
                    "eventId": "evt_new",
                    "firstSeenAt": "2026-09-14T10:00:50.000Z",
                    "listShard": "03",
                    "attention": "03",
                    "status": "FAILED",
                }
            ),
        )
        client.update_item(
            TableName="events",
            Key={"eventId": {"S": "evt_0001"}},
            UpdateExpression="SET attention = :s, #st = :f",
            ExpressionAttributeNames={"#st": "status"},
            ExpressionAttributeValues={":s": {"S": "17"}, ":f": {"S": "FAILED"}},
        )
        client.update_item(TableName="events", Key={"eventId": {"S": "evt_0002"}}, UpdateExpression="REMOVE attention")
        client.delete_item(TableName="events", Key={"eventId": {"S": "evt_0003"}})

    def stored() -> list[Any]:
        return sorted(client.scan(TableName="events", ConsistentRead=True)["Items"], key=lambda i: i["eventId"]["S"])

    before = stored()
    plain = _questions(client)
    with indexed_queries():
        fast = _questions(client)
        fast_again = _questions(client)  # from the partition lists (and their sorts) it kept
        assert stored() == before  # answers built without deep copies changed nothing stored
        writes()
        fast_after = _questions(client)
    plain_after = _questions(client)
    assert fast == plain and fast_again == plain
    assert fast_after == plain_after and plain_after != plain


EVERY_KIND: dict[str, Any] = {
    "eventId": {"S": "evt_kinds"},
    "s": {"S": 'text with "quotes", <tags> and \u00e9\u4e2d'},
    "empty": {"S": ""},
    "n": {"N": "12.50"},
    "negative": {"N": "-3"},
    "b": {"B": b"\x00\xffbinary"},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2.5"]},
    "bs": {"BS": [b"x", b"\x01y"]},
    "flag": {"BOOL": False},
    "nothing": {"NULL": True},
    "list": {"L": [{"S": "one"}, {"N": "2"}, {"L": []}, {"M": {}}, {"B": b"z"}, {"NULL": True}]},
    "map": {"M": {"nested": {"M": {"deep": {"L": [{"BOOL": True}, {"SS": ["q"]}]}}}, "other": {"S": "second key"}}},
}


def _bodies(client: Any) -> list[bytes]:
    """The raw response bodies of reads and writes that return items, and of a refused write."""
    bodies: list[bytes] = []
    client.meta.events.register(
        "after-call.dynamodb.*", lambda http_response, **_: bodies.append(http_response.content)
    )
    key = {"eventId": EVERY_KIND["eventId"]}
    client.get_item(TableName="kinds", Key=key)
    client.get_item(
        TableName="kinds",
        Key=key,
        ProjectionExpression="#m.nested, b, ss, #l",
        ExpressionAttributeNames={"#m": "map", "#l": "list"},
    )
    client.query(
        TableName="kinds", KeyConditionExpression="eventId = :e", ExpressionAttributeValues={":e": key["eventId"]}
    )
    client.scan(TableName="kinds")
    client.batch_get_item(RequestItems={"kinds": {"Keys": [key, {"eventId": {"S": "missing"}}]}})
    client.transact_get_items(TransactItems=[{"Get": {"TableName": "kinds", "Key": key}}])
    client.update_item(
        TableName="kinds",
        Key=key,
        UpdateExpression="SET #c = if_not_exists(#c, :z) + :one",
        ExpressionAttributeNames={"#c": "counter"},
        ExpressionAttributeValues={":z": {"N": "0"}, ":one": {"N": "1"}},
        ReturnValues="ALL_NEW",
    )
    client.put_item(TableName="kinds", Item=EVERY_KIND, ReturnValues="ALL_OLD")
    with contextlib.suppress(client.exceptions.ConditionalCheckFailedException):
        client.put_item(
            TableName="kinds",
            Item=EVERY_KIND,
            ConditionExpression="attribute_not_exists(eventId)",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    client.describe_table(TableName="kinds")
    return bodies


def test_items_are_written_byte_for_byte_as_moto_writes_them(aws):
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(
        TableName="kinds",
        KeySchema=[{"AttributeName": "eventId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "eventId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.put_item(TableName="kinds", Item=EVERY_KIND)

    plain = _bodies(client)
    with fast_attribute_values():
        fast = _bodies(boto3.client("dynamodb", region_name=REGION))
    plain_again = _bodies(boto3.client("dynamodb", region_name=REGION))

    assert len(fast) == len(plain) == 10
    assert b'"BS": ["eA==", "AXk="]' in plain[0]  # binaries base64-encoded once, as DynamoDB sends them
    for before, with_it, after in zip(plain, fast, plain_again, strict=True):
        assert with_it == before or with_it == after  # describe_table's counters move between calls
