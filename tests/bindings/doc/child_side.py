# The reference document's child-process example (a NoneBot plugin), as
# it is there, but for the imports: liteyuki.comm is gi.repository.Ly,
# and NoneBot and LiteyukiBot's logger are the stand-ins in frameworks.py.
import gi; gi.require_version('Ly', '1')  # noqa: E702
from frameworks import get_driver
from gi.repository.Ly import active_channel, passive_channel # 子进程中获取通道直接导入进程全局单例即可
from frameworks import logger
driver = get_driver()
# 被动模式,通过装饰器注册一个函数在接收到消息时运行,每次接收到字符串数据时都会运行
@passive_channel.on_receive(filter_func=lambda data: isinstance(data, str))
async def on_passive_receive(data):
    logger.info(f"Passive receive: {data}")
# 注册一个函数在NoneBot启动后运行
@driver.on_startup
def on_startup():
    while True:
        data = active_channel.receive()
        logger.info(f"Active receive: {data}")
