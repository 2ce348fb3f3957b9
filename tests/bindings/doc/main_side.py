# The reference document's main-process example, as it is there, but for
# the imports: liteyuki.comm is gi.repository.Ly, and LiteyukiBot's
# get_bot comes from the stand-in in frameworks.py.
import asyncio
import gi; gi.require_version('Ly', '1')  # noqa: E702
from gi.repository.Ly import get_channel, Channel  # noqa: F401
from frameworks import get_bot
# get_channel函数获取通道对象参数为调用set_channel时的通道标识
channel_passive = get_channel("nonebot-passive") # 获取被动通道
channel_active = get_channel("nonebot-active") # 获取主动通道
liteyuki_bot = get_bot()
# 注册一个函数在轻雪启动后运行
@liteyuki_bot.on_after_start
async def send_data():
    while True:
        channel_passive.send("I am liteyuki main process passive")
        channel_active.send("I am liteyuki main process active")
        await asyncio.sleep(3) # 每3秒发送一次消息
