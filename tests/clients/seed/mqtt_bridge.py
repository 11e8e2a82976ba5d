#!/usr/bin/env python3
"""MQTT 브릿지: 로컬 -> 클라우드"""

import paho.mqtt.client as mqtt
from google.cloud import pubsub_v1
import json
import threading
import time
import os

os.environ['GOOGLE_APPLICATION_CREDENTIALS'] = 'gcp-credentials.json'

class MQTTBridge:
    """로컬 MQTT를 클라우드로 브릿지"""

    def __init__(self, local_broker: str, gcp_project: str, gcp_topic: str):
        # 로컬 MQTT 클라이언트
        self.local_client = mqtt.Client(client_id="mqtt_bridge")
        self.local_client.on_connect = self._on_local_connect
        self.local_client.on_message = self._on_local_message

        self.local_broker = local_broker

        # GCP Pub/Sub
        self.publisher = pubsub_v1.PublisherClient()
        self.topic_path = f"projects/{gcp_project}/topics/{gcp_topic}"

        # 브릿지 설정
        self.topic_mapping = {
            "sensor/#": True,
            "device/+/status": True
        }

        self.stats = {
            "messages_received": 0,
            "messages_forwarded": 0,
            "errors": 0
        }

    def _on_local_connect(self, client, userdata, flags, rc):
        if rc == 0:
            print("로컬 브로커 연결됨")
            # 토픽 구독
            for topic in self.topic_mapping:
                client.subscribe(topic)
                print(f"구독: {topic}")

    def _on_local_message(self, client, userdata, msg):
        """로컬 메시지 수신 -> 클라우드로 전달"""
        self.stats["messages_received"] += 1

        try:
            # 메시지 파싱
            payload = msg.payload.decode('utf-8')

            try:
                data = json.loads(payload)
            except json.JSONDecodeError:
                data = {"raw": payload}

            # 메타데이터 추가
            cloud_message = {
                "source_topic": msg.topic,
                "data": data,
                "timestamp": time.time()
            }

            # 클라우드로 발행
            self._forward_to_cloud(cloud_message, msg.topic)
            self.stats["messages_forwarded"] += 1

        except Exception as e:
            print(f"브릿지 오류: {e}")
            self.stats["errors"] += 1

    def _forward_to_cloud(self, message: dict, source_topic: str):
        """클라우드로 메시지 전달"""
        data = json.dumps(message).encode('utf-8')

        future = self.publisher.publish(
            self.topic_path,
            data,
            source_topic=source_topic
        )
        future.result()  # 발행 완료 대기

    def start(self):
        """브릿지 시작"""
        print(f"MQTT 브릿지 시작: {self.local_broker} -> GCP")

        self.local_client.connect(self.local_broker, 1883)
        self.local_client.loop_start()

    def stop(self):
        """브릿지 중지"""
        self.local_client.loop_stop()
        self.local_client.disconnect()

        print(f"\n브릿지 통계:")
        print(f"  수신: {self.stats['messages_received']}")
        print(f"  전달: {self.stats['messages_forwarded']}")
        print(f"  오류: {self.stats['errors']}")

    def run(self):
        """메인 루프"""
        self.start()

        try:
            while True:
                time.sleep(10)
                print(f"브릿지 상태: 수신={self.stats['messages_received']}, "
                      f"전달={self.stats['messages_forwarded']}")
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

if __name__ == "__main__":
    bridge = MQTTBridge(
        local_broker="localhost",
        gcp_project="your-project-id",
        gcp_topic="iot-sensor-data"
    )
    bridge.run()
