#!/usr/bin/env python3
"""종합 IoT 데이터 파이프라인"""

import paho.mqtt.client as mqtt
from google.cloud import pubsub_v1
import json
import time
import threading
from datetime import datetime
from dataclasses import dataclass
from typing import Callable, List

@dataclass
class IoTMessage:
    device_id: str
    data: dict
    timestamp: datetime
    source: str

class IoTPipeline:
    """IoT 데이터 파이프라인"""

    def __init__(self, config: dict):
        self.config = config
        self.handlers: List[Callable] = []

        # 로컬 MQTT
        self.mqtt_client = mqtt.Client()
        self.mqtt_client.on_message = self._on_mqtt_message

        # 클라우드 (옵션)
        if config.get("gcp_enabled"):
            self.publisher = pubsub_v1.PublisherClient()

    def add_handler(self, handler: Callable):
        """메시지 핸들러 추가"""
        self.handlers.append(handler)

    def _on_mqtt_message(self, client, userdata, msg):
        """MQTT 메시지 처리"""
        try:
            payload = json.loads(msg.payload.decode())

            message = IoTMessage(
                device_id=payload.get("device_id", "unknown"),
                data=payload,
                timestamp=datetime.now(),
                source=msg.topic
            )

            # 핸들러 실행
            for handler in self.handlers:
                try:
                    handler(message)
                except Exception as e:
                    print(f"핸들러 오류: {e}")

        except Exception as e:
            print(f"메시지 처리 오류: {e}")

    def start(self):
        """파이프라인 시작"""
        broker = self.config.get("mqtt_broker", "localhost")
        topics = self.config.get("mqtt_topics", ["sensor/#"])

        self.mqtt_client.connect(broker, 1883)

        for topic in topics:
            self.mqtt_client.subscribe(topic)
            print(f"구독: {topic}")

        self.mqtt_client.loop_start()
        print("IoT 파이프라인 시작됨")

    def stop(self):
        """파이프라인 중지"""
        self.mqtt_client.loop_stop()
        self.mqtt_client.disconnect()

# 핸들러 예시
def log_handler(message: IoTMessage):
    """로깅 핸들러"""
    print(f"[{message.timestamp}] {message.device_id}: {message.data}")

def alert_handler(message: IoTMessage):
    """알림 핸들러"""
    temp = message.data.get("temperature")
    if temp and temp > 35:
        print(f"[ALERT] 고온 감지: {message.device_id} = {temp}°C")

def cloud_handler(message: IoTMessage, publisher, topic_path):
    """클라우드 전송 핸들러"""
    data = json.dumps({
        "device_id": message.device_id,
        "data": message.data,
        "timestamp": message.timestamp.isoformat()
    }).encode()

    publisher.publish(topic_path, data)

# 사용 예
if __name__ == "__main__":
    config = {
        "mqtt_broker": "localhost",
        "mqtt_topics": ["sensor/#", "device/+/status"],
        "gcp_enabled": False
    }

    pipeline = IoTPipeline(config)
    pipeline.add_handler(log_handler)
    pipeline.add_handler(alert_handler)

    pipeline.start()

    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pipeline.stop()
